"""A real, cheap HTTP/1.1 server that imitates OpenAI- and Mistral-style chat completions.

Both SDKs post to ``/v1/chat/completions`` and parse the same response shape, so one
server serves both. It is a raw asyncio keep-alive implementation (no framework) so it
costs little CPU when it shares the machine with the client in benchmarks.

``GET /_mock/stats`` answers the request count, the requests in flight (received, not yet
answered) and the time integral of that, so a client can compare its own figures.

Latency is ``latency`` seconds, optionally spread by ``jitter`` (a fraction: each
request sleeps ``latency * uniform(1 - jitter, 1 + jitter)``, seeded).

Faults are injected precisely in two ways:

* a marker in any message text: ``[[fault:KIND]]``, ``[[fault:KIND:ARG]]`` or
  ``[[fault:KIND*N]]`` (the first ``N`` requests with that exact body fail, later
  retries succeed; without ``*N`` every such request fails);
* a ``fault_plan``: the i-th request the server receives gets ``fault_plan[i]``
  (``None`` or ``"ok"`` means no fault).

A ``[[delay:SECONDS]]`` marker sets that request's latency.

Usage (``prompt_tokens``, and ``prompt_tokens_details.cached_tokens`` from a prefix cache
over the requests seen so far) is counted as :mod:`pathgen.testing.usage` says.

Kinds: ``429`` (ARG = Retry-After seconds, default ``retry_after``), ``429ms`` (ARG =
``retry-after-ms`` milliseconds, as OpenAI sends, and no ``Retry-After``), ``500``, ``503``,
``400``, ``401``, ``404``, ``hang`` (ARG = seconds, default one hour), ``malformed``
(truncated JSON with status 200), ``empty`` (empty content), ``refusal``
(``message.refusal`` set, content null, finish_reason ``content_filter``), ``think``
(a ``<think>…</think>`` block before the answer, as reasoning models served by Ollama or
llama.cpp send), ``overthink`` (an unclosed ``<think>`` cut at max_tokens, finish_reason
``length``) and ``length`` (the answer cut in half, finish_reason ``length``).

Example::

    with run_mock_server(latency=0.05) as srv:
        client = AsyncOpenAI(base_url=srv.base_url, api_key="x")
        ...
        assert srv.count() == 1

Run ``python -m pathgen.testing.llm_server --latency 1`` to serve from its own process
(``run_mock_server(process=True)`` does that and still returns the same handle).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import random
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from pathgen.llm.tokens import text_tokens
from pathgen.testing.batch_api import BatchAPI
from pathgen.testing.usage import PromptCache

_FAULT_RE = re.compile(rb"\[\[fault:([a-z0-9]+)(?::([0-9.]+))?(?:\*(\d+))?\]\]")
_DELAY_RE = re.compile(rb"\[\[delay:([0-9.]+)\]\]")
_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    411: "Length Required",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def prompt_digest(text: str) -> str:
    """Short stable hash the server puts in each answer (of the last user message text)."""
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:12]


def expected_content(last_user_text: str, n_images: int = 0) -> str:
    """The content the server answers for a request whose last user text is given."""
    return f"Description of image: {prompt_digest(last_user_text)} ({n_images} images)"


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it; ``t`` is ``time.monotonic()`` on arrival."""

    t: float
    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any] | None
    #: The request's ``model`` (kept even when bodies are not).
    model: str | None = None


@dataclass
class _State:
    latency: float
    jitter: float
    retry_after: float
    fault_plan: list[str | None]
    rng: random.Random
    keep_bodies: bool = True
    #: (substring, content): a request whose last user text contains the substring gets
    #: that content instead of the echo, e.g. a list of prompts for a prompt-writing call.
    replies: list[tuple[str, str]] = field(default_factory=list)
    #: OpenAI's Files and Batch API (see :mod:`pathgen.testing.batch_api`).
    batch_api: BatchAPI = field(default_factory=BatchAPI)
    #: Prefix cache behind ``usage.prompt_tokens_details.cached_tokens``.
    cache: PromptCache = field(default_factory=PromptCache)
    log: list[RecordedRequest] = field(default_factory=list)
    marker_hits: dict[bytes, int] = field(default_factory=dict)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    transports: set[asyncio.Transport] = field(default_factory=set)
    #: Completion requests received and not answered yet, and its integral over time.
    in_flight: int = 0
    in_flight_s: float = 0.0
    changed_at: float = field(default_factory=time.monotonic)
    #: Requests in flight per model now, and the most there were at once.
    model_in_flight: dict[str, int] = field(default_factory=dict)
    model_peak: dict[str, int] = field(default_factory=dict)

    def track(self, delta: int, model: str | None = None) -> None:
        """Count a request in (+1) or out (-1) of flight, keeping the time integral."""
        now = time.monotonic()
        self.in_flight_s += self.in_flight * (now - self.changed_at)
        self.changed_at = now
        self.in_flight += delta
        if model is not None:
            n = self.model_in_flight[model] = self.model_in_flight.get(model, 0) + delta
            self.model_peak[model] = max(self.model_peak.get(model, 0), n)

    def stats(self) -> dict[str, Any]:
        """Received requests, requests in flight now, in-flight seconds so far, and per
        model the requests in flight now (``by_model``) and the most at once (``peak``)."""
        self.track(0)
        return {
            "count": len(self.log),
            "in_flight": self.in_flight,
            "in_flight_s": self.in_flight_s,
            "t": time.monotonic(),
            "peak": dict(self.model_peak),
            "by_model": {m: n for m, n in self.model_in_flight.items() if n},
        }


def _message_texts(body: dict[str, Any]) -> tuple[str, int]:
    """Last user message text and the number of images in the whole request."""
    last_text = ""
    images = 0
    for msg in body.get("messages", []):
        content = msg.get("content")
        text = ""
        if isinstance(content, str):
            text = content
        elif isinstance(content, list):
            parts = []
            for part in content:
                if part.get("type") == "text":
                    parts.append(part.get("text", ""))
                elif part.get("type") == "image_url":
                    images += 1
            text = "\n".join(parts)
        if msg.get("role") == "user":
            last_text = text
    return last_text, images


def _completion(
    state: _State, body: dict[str, Any], content: str | None, *, finish: str, refusal: str | None
) -> dict[str, Any]:
    out_tokens = text_tokens(content or refusal or "")
    return {
        "id": "chatcmpl-mock",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "mock"),
        "choices": [
            {
                "index": 0,
                "finish_reason": finish,
                "message": {"role": "assistant", "content": content, "refusal": refusal},
            }
        ],
        "usage": state.cache.usage(body, out_tokens),
    }


def _response(
    status: int,
    payload: bytes,
    extra: dict[str, str] | None = None,
    content_type: str = "application/json",
) -> bytes:
    head = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}"]
    head.append(f"content-type: {content_type}")
    head.append(f"content-length: {len(payload)}")
    for key, value in (extra or {}).items():
        head.append(f"{key}: {value}")
    return ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload


def _error(status: int, message: str, extra: dict[str, str] | None = None) -> bytes:
    body = json.dumps({"error": {"message": message, "type": "mock_error", "code": status}})
    return _response(status, body.encode(), extra)


class _Connection(asyncio.Protocol):
    def __init__(self, state: _State) -> None:
        self.state = state
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.busy = False
        self.task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.state.transports.add(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.state.transports.discard(self.transport)
        if self.task is not None:
            self.task.cancel()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self._next()

    def _next(self) -> None:
        if self.busy or self.transport is None or self.transport.is_closing():
            return
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        lines = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", ""):
            self.transport.write(_error(411, "send a content-length"))
            self.transport.close()
            return
        size = int(headers.get("content-length", "0"))
        if len(self.buf) < end + 4 + size:
            return
        body = bytes(self.buf[end + 4 : end + 4 + size])
        del self.buf[: end + 4 + size]
        self.busy = True
        self.task = asyncio.get_running_loop().create_task(
            self._handle(method, path, headers, body)
        )
        self.state.tasks.add(self.task)
        self.task.add_done_callback(self.state.tasks.discard)

    async def _handle(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> None:
        out = await self._respond(method, path, headers, raw)
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(out)
        self.busy = False
        self.task = None
        if headers.get("connection", "").lower() == "close":
            self.transport.close()
            return
        self._next()

    async def _respond(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> bytes:
        state = self.state
        if method == "GET" and path.startswith("/_mock/log"):
            bodies = "bodies=0" not in path
            rows = [
                {
                    "t": r.t,
                    "method": r.method,
                    "path": r.path,
                    "headers": r.headers,
                    "body": r.body if bodies else None,
                    "model": r.model,
                }
                for r in state.log
            ]
            return _response(200, json.dumps(rows).encode())
        if method == "GET" and path == "/_mock/stats":
            return _response(200, json.dumps(state.stats()).encode())
        if method == "POST" and path == "/_mock/reset":
            state.log.clear()
            state.marker_hits.clear()
            state.cache.clear()
            return _response(200, b"{}")
        arrived = time.monotonic()
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = None
        state.log.append(
            RecordedRequest(
                arrived,
                method,
                path,
                headers,
                body if state.keep_bodies else None,
                body.get("model") if isinstance(body, dict) else None,
            )
        )
        if state.batch_api.handles(path):
            status, payload = state.batch_api.respond(method, path, headers, raw, self._answer)
            if isinstance(payload, bytes):  # a file's content
                return _response(status, payload, content_type="application/octet-stream")
            return _response(status, json.dumps(payload).encode())
        if method != "POST" or not path.endswith("/chat/completions"):
            return _error(404, f"no route {method} {path}")
        if not isinstance(body, dict):
            return _error(400, "request body is not JSON")
        kind, arg = self._fault(len(state.log) - 1, raw)
        delay = state.latency
        forced = _DELAY_RE.search(raw)
        if forced:
            delay = float(forced.group(1))
        elif state.jitter:
            delay *= state.rng.uniform(1 - state.jitter, 1 + state.jitter)
        model = str(body.get("model"))
        state.track(+1, model)
        try:
            if kind == "hang":
                await asyncio.sleep(float(arg) if arg else 3600.0)
            elif delay > 0:
                await asyncio.sleep(delay)
            return self._fault_response(kind, arg, body)
        finally:
            state.track(-1, model)

    def _answer(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Status and JSON of the answer to one batch line (its markers apply)."""
        kind, arg = self._fault(-1, json.dumps(body).encode())
        out = self._fault_response(kind if kind != "hang" else None, arg, body)
        head, _, payload = out.partition(b"\r\n\r\n")
        try:
            return int(head.split(b" ")[1]), json.loads(payload)
        except ValueError:
            return 500, {"error": {"message": "malformed"}}

    def _fault(self, index: int, raw: bytes) -> tuple[str | None, str | None]:
        state = self.state
        match = _FAULT_RE.search(raw)
        if match:
            kind, arg, times = (g.decode() if g else None for g in match.groups())
            key = hashlib.sha1(raw).digest()
            hits = state.marker_hits.get(key, 0)
            state.marker_hits[key] = hits + 1
            if times is None or hits < int(times):
                return kind, arg
        if 0 <= index < len(state.fault_plan):
            planned = state.fault_plan[index]
            if planned and planned != "ok":
                kind, _, arg = planned.partition(":")
                return kind, arg or None
        return None, None

    def _fault_response(self, kind: str | None, arg: str | None, body: dict[str, Any]) -> bytes:
        if kind == "429":
            wait = arg or f"{self.state.retry_after:g}"
            return _error(429, "rate limit reached (mock)", {"retry-after": wait})
        if kind == "429ms":  # OpenAI-style: the delay in milliseconds, no Retry-After
            wait = arg or f"{self.state.retry_after * 1000:g}"
            return _error(429, "rate limit reached (mock)", {"retry-after-ms": wait})
        if kind in ("400", "401", "404", "500", "503"):
            return _error(int(kind), f"mock fault {kind}")
        if kind == "malformed":
            return _response(200, b'{"id": "chatcmpl-mock", "choices": [{"mess')
        if kind == "empty":
            payload = _completion(self.state, body, "", finish="stop", refusal=None)
        elif kind == "refusal":
            payload = _completion(
                self.state, body, None, finish="content_filter", refusal="I can't help."
            )
        elif kind == "overthink":
            thinking = "<think>The user wants a description. Let me look at the nuclei"
            payload = _completion(self.state, body, thinking, finish="length", refusal=None)
        else:
            text, images = _message_texts(body)
            content = next((c for key, c in self.state.replies if key in text), None)
            content = content if content is not None else expected_content(text, images)
            finish = "stop"
            if kind == "think":
                content = f"<think>\nThe user wants a caption. I see nuclei.\n</think>\n\n{content}"
            elif kind == "length":
                content, finish = content[: max(1, len(content) // 2)], "length"
            payload = _completion(self.state, body, content, finish=finish, refusal=None)
        return _response(200, json.dumps(payload).encode())


async def _serve(state: _State, port: int = 0) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: _Connection(state), "127.0.0.1", port, backlog=2048)


def _shutdown(state: _State, server: asyncio.Server) -> None:
    server.close()
    for task in list(state.tasks):
        task.cancel()
    for transport in list(state.transports):
        transport.abort()


class MockServer:
    """Handle on a running mock server (thread or process); use :func:`run_mock_server`."""

    def __init__(self, port: int) -> None:
        self.port = port
        #: Root URL (what the Mistral SDK takes as ``server_url``).
        self.root_url = f"http://127.0.0.1:{port}"
        #: OpenAI-style base URL (what ``AsyncOpenAI(base_url=...)`` takes).
        self.base_url = f"{self.root_url}/v1"

    def requests(self, *, bodies: bool = True) -> list[RecordedRequest]:
        """Every request received so far, in arrival order."""
        url = f"{self.root_url}/_mock/log" + ("" if bodies else "?bodies=0")
        with urllib.request.urlopen(url, timeout=30) as resp:
            rows = json.loads(resp.read())
        return [RecordedRequest(**row) for row in rows]

    def count(self) -> int:
        """How many completion requests the server has received."""
        return len(self.requests(bodies=False))

    def stats(self) -> dict[str, Any]:
        """``count`` received, ``in_flight`` now, ``in_flight_s`` (its integral), server
        ``t``, and per model the requests in flight now (``by_model``) and the most at once
        (``peak``)."""
        with urllib.request.urlopen(f"{self.root_url}/_mock/stats", timeout=30) as resp:
            return json.loads(resp.read())

    def reset(self) -> None:
        """Forget the request log and the marker counters."""
        req = urllib.request.Request(f"{self.root_url}/_mock/reset", data=b"", method="POST")
        with urllib.request.urlopen(req, timeout=30):
            pass


def _new_state(
    latency: float,
    jitter: float,
    retry_after: float,
    fault_plan: Sequence[str | None],
    seed: int,
    keep_bodies: bool,
) -> _State:
    return _State(
        latency=latency,
        jitter=jitter,
        retry_after=retry_after,
        fault_plan=list(fault_plan),
        rng=random.Random(seed),
        keep_bodies=keep_bodies,
    )


@contextlib.contextmanager
def run_mock_server(
    *,
    latency: float = 0.0,
    jitter: float = 0.0,
    retry_after: float = 1.0,
    fault_plan: Sequence[str | None] = (),
    seed: int = 0,
    keep_bodies: bool = True,
    process: bool = False,
    replies: Sequence[tuple[str, str]] = (),
    prompt_cache: bool = True,
    batch_api: BatchAPI | None = None,
) -> Iterator[MockServer]:
    """Serve on 127.0.0.1 (ephemeral port) in a thread, or in a child process.

    ``prompt_cache=False`` (thread mode) never reports cached prompt tokens; ``batch_api``
    (thread mode) sets the Batch API's delays and faults and lets the caller read what
    was submitted."""
    if process:
        if replies:
            raise ValueError("replies are only supported in thread mode")
        yield from _run_in_process(latency, jitter, retry_after, fault_plan, seed, keep_bodies)
        return
    state = _new_state(latency, jitter, retry_after, fault_plan, seed, keep_bodies)
    state.replies = list(replies)
    state.cache = PromptCache(enabled=prompt_cache)
    if batch_api is not None:
        state.batch_api = batch_api
    loop = asyncio.new_event_loop()
    started = threading.Event()
    holder: dict[str, Any] = {}

    def main() -> None:
        asyncio.set_event_loop(loop)
        holder["server"] = loop.run_until_complete(_serve(state))
        started.set()
        loop.run_forever()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()

    thread = threading.Thread(target=main, name="mock-llm-server", daemon=True)
    thread.start()
    started.wait(10)
    server: asyncio.Server = holder["server"]
    try:
        yield MockServer(server.sockets[0].getsockname()[1])
    finally:
        loop.call_soon_threadsafe(_shutdown, state, server)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def _run_in_process(
    latency: float,
    jitter: float,
    retry_after: float,
    fault_plan: Sequence[str | None],
    seed: int,
    keep_bodies: bool,
) -> Iterator[MockServer]:
    cmd = [sys.executable, "-m", "pathgen.testing.llm_server", "--latency", str(latency)]
    cmd += ["--jitter", str(jitter), "--retry-after", str(retry_after), "--seed", str(seed)]
    cmd += ["--fault-plan", json.dumps(list(fault_plan))]
    if not keep_bodies:
        cmd.append("--no-bodies")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"mock LLM server did not start (said {line!r})")
        yield MockServer(int(line.split()[1]))
    finally:
        proc.terminate()
        proc.wait(10)


def main(argv: Sequence[str] | None = None) -> None:
    """Serve until terminated; prints ``PORT <n>`` once listening."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--jitter", type=float, default=0.0)
    parser.add_argument("--retry-after", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fault-plan", default="[]")
    parser.add_argument("--no-bodies", action="store_true")
    args = parser.parse_args(argv)
    state = _new_state(
        args.latency,
        args.jitter,
        args.retry_after,
        json.loads(args.fault_plan),
        args.seed,
        not args.no_bodies,
    )

    async def serve() -> None:
        server = await _serve(state, args.port)
        print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
        async with server:
            await server.serve_forever()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    main()
