"""Wire format shared by OpenAI-compatible and Mistral chat completions.

Pure helpers: request messages to JSON, response JSON to :class:`ChatResult`, and
HTTP status / ``Retry-After`` to the :mod:`pathgen.errors` LLM errors.
"""

from __future__ import annotations

import email.utils
import re
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from typing import Any

from pathgen.errors import BadOutput, LLMError, ProviderError, ProviderRejected, RateLimited
from pathgen.llm.base import ChatRequest, ChatResult
from pathgen.llm.images import data_url


class Refused(BadOutput):
    """The model declined to answer (``message.refusal`` or a content filter); not retried."""


#: Mistral wants ``"image_url": "<url>"``, OpenAI ``"image_url": {"url": "<url>"}``.
ImageStyle = Callable[[str], Any]


def openai_image(url: str) -> dict[str, str]:
    """OpenAI's image_url value."""
    return {"url": url}


def mistral_image(url: str) -> str:
    """Mistral's image_url value."""
    return url


def messages_json(request: ChatRequest, image_style: ImageStyle) -> list[dict[str, Any]]:
    """The ``messages`` array; images become base64 JPEG data URLs after the text."""
    out: list[dict[str, Any]] = []
    for msg in request.messages:
        if not msg.images:
            out.append({"role": msg.role, "content": msg.text})
            continue
        parts: list[dict[str, Any]] = [{"type": "text", "text": msg.text}] if msg.text else []
        for image in msg.images:
            parts.append({"type": "image_url", "image_url": image_style(data_url(image))})
        out.append({"role": msg.role, "content": parts})
    return out


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP-date)."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def retry_after_s(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """The delay a 429 asks for: ``retry-after-ms`` (OpenAI-compatible servers) or
    ``Retry-After`` (seconds or an HTTP date); None when neither is usable."""
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return max(0.0, float(millis) / 1000.0)
        except ValueError:
            pass
    return parse_retry_after(headers.get("retry-after"), now)


_REJECTED = {
    400: "bad request",
    401: "unauthorized",
    403: "forbidden",
    404: "not found",
    422: "unprocessable request",
}


def error_for_status(
    status: int,
    headers: Mapping[str, str],
    body: str,
    *,
    provider: str,
    api_key_env: str | None,
    base_url: str | None = None,
    model: str | None = None,
) -> LLMError:
    """Map an HTTP error status to a transient or permanent :class:`LLMError`."""
    detail = body.strip().replace("\n", " ")[:300]
    if status == 429:
        return RateLimited(f"{provider}: rate limited (HTTP 429): {detail}", retry_after_s(headers))
    if status in (408, 409) or status >= 500:
        return ProviderError(f"{provider}: server error (HTTP {status}): {detail}")
    where = f"{provider} at {base_url or 'its default endpoint'}, model {model!r}"
    hint = {
        401: f": check the API key in ${api_key_env or 'the api_key_env variable'}",
        403: ": the key lacks access to this model",
        404: ": check base_url and model",
    }.get(status, "")
    what = _REJECTED.get(status, "request rejected")
    return ProviderRejected(
        f"{where}: {what} (HTTP {status}){hint}: {detail}",
        status=status,
        provider=provider,
        base_url=base_url,
        model=model,
        detail=detail,
    )


def transport_error(provider: str, exc: BaseException, base_url: str | None) -> ProviderError:
    """A retryable error for a failed connection or a timeout, saying which it was.

    The aiohttp transport reports a refused connection as a *connect timeout*; the cause
    chain tells them apart, so "server down" never reads as "server slow".
    """
    chain: list[BaseException] = []
    err: BaseException | None = exc
    while err is not None and len(chain) < 10:
        chain.append(err)
        err = err.__cause__ or err.__context__
    where = base_url or "the provider's default endpoint"
    for err in chain:
        if isinstance(err, ConnectionRefusedError):
            return ProviderError(
                f"{provider}: cannot connect to {where}: connection refused "
                "(is the server running, and is base_url right?)"
            )
        if isinstance(err, socket.gaierror):
            return ProviderError(f"{provider}: cannot resolve the host of {where}: {err}")
        if isinstance(err, ssl.SSLError):
            return ProviderError(f"{provider}: TLS error talking to {where}: {err}")
    if any(isinstance(e, TimeoutError) or "Timeout" in type(e).__name__ for e in chain):
        return ProviderError(f"{provider}: request timed out ({where})")
    return ProviderError(f"{provider}: connection error ({where}): {chain[-1]!r}")


def cached_tokens(usage: Any) -> int:
    """Prompt tokens served from the provider's prefix cache: OpenAI and Mistral both report
    them as ``usage.prompt_tokens_details.cached_tokens`` (a part of ``prompt_tokens``)."""
    details = usage.get("prompt_tokens_details") if isinstance(usage, dict) else None
    if not isinstance(details, dict):
        return 0
    return int(details.get("cached_tokens") or 0)


def _text_of(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # Mistral may answer with content chunks
        return "".join(c.get("text", "") for c in content if isinstance(c, dict))
    return str(content)


#: A reasoning model's thinking, which some servers (Ollama, llama.cpp, vLLM without a
#: reasoning parser) leave in ``content``: never part of a caption.
_THINK = re.compile(r"<(think|thinking|reasoning)>.*?</\1>", re.DOTALL | re.IGNORECASE)
_OPEN_THINK = re.compile(r"^\s*<(think|thinking|reasoning)>", re.IGNORECASE)


def strip_reasoning(text: str) -> tuple[str, bool]:
    """``text`` without ``<think>…</think>`` blocks, and whether it was cut off mid-thought.

    An opening tag that is never closed means the answer ran out while still thinking.
    """
    answer = _THINK.sub("", text).strip() if _THINK.search(text) else text
    if _OPEN_THINK.match(answer):
        return "", True
    return answer, False


def result_from_payload(
    data: Any,
    *,
    provider: str,
    model: str,
    latency_s: float,
) -> ChatResult:
    """Build a :class:`ChatResult` from a parsed chat-completion body.

    Raises ``ProviderError`` (retryable) for a body without choices, and
    :class:`BadOutput` for a refusal or empty content.
    """
    try:
        choice = data["choices"][0]
        message = choice.get("message") or {}
        finish = choice.get("finish_reason")
    except (KeyError, IndexError, TypeError, AttributeError):
        raise ProviderError(f"{provider}: malformed response (no choices)") from None
    usage = data.get("usage") or {}
    refusal = message.get("refusal")
    raw = _text_of(message.get("content"))
    if refusal or finish == "content_filter":
        raise Refused(
            f"{provider}: the model refused (finish_reason={finish}): {refusal or ''}".strip(),
            raw=refusal or raw or None,
        )
    text, unfinished = strip_reasoning(raw)
    thought = unfinished or bool(message.get("reasoning_content") or message.get("reasoning"))
    if not text.strip():
        hint = (
            ": the answer was all reasoning; raise max_tokens or turn the model's thinking off"
            if thought
            else ""
        )
        raise BadOutput(f"{provider}: empty content (finish_reason={finish}){hint}", raw=raw)
    return ChatResult(
        text=text,
        model=data.get("model") or model,
        provider=provider,
        input_tokens=int(usage.get("prompt_tokens") or 0),
        output_tokens=int(usage.get("completion_tokens") or 0),
        latency_s=latency_s,
        finish_reason=finish,
        cached_input_tokens=cached_tokens(usage),
    )
