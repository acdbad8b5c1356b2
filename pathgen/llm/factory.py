"""Build the client a stage's settings ask for, and share one per configuration."""

from __future__ import annotations

from typing import Any

from pathgen.errors import ConfigError
from pathgen.llm.base import LLMClient
from pathgen.llm.ratelimit import RateLimiter
from pathgen.llm.resilient import ResilientClient
from pathgen.settings import StageSettings

#: Settings that identify a provider configuration (the rest is per request).
_CLIENT_KEYS = (
    "provider",
    "model",
    "base_url",
    "api_key_env",
    "max_concurrency",
    "requests_per_minute",
    "tokens_per_minute",
    "timeout_s",
    "max_attempts",
)


def make_client(stage: StageSettings, **offline: Any) -> LLMClient:
    """A new client for ``stage``: provider adapter + limits, timeout, retries, bound.

    ``offline`` keyword arguments (``clip=`` scorer, ...) are passed to
    :func:`pathgen.llm.offline.make_offline_client` for provider ``"offline"``.

    Example::

        client = make_client(settings.captioning.describe)
        try:
            result = await client.complete(request)
        finally:
            await client.aclose()
    """
    if stage.provider == "offline":
        from pathgen.llm.offline import make_offline_client

        if "clip" not in offline:
            raise ConfigError(
                "the offline provider needs a CLIP scorer: call make_client(stage, clip=...)",
                key="provider",
            )
        return make_offline_client(stage, **offline)
    connections = stage.max_concurrency + 8
    inner: LLMClient
    if stage.provider == "openai":
        from pathgen.llm.openai_client import OpenAIClient

        inner = OpenAIClient(
            model=stage.model,
            base_url=stage.base_url,
            api_key_env=stage.api_key_env,
            timeout_s=stage.timeout_s,
            max_connections=connections,
        )
    elif stage.provider == "mistral":
        from pathgen.llm.mistral_client import MistralClient

        inner = MistralClient(
            model=stage.model,
            base_url=stage.base_url,
            api_key_env=stage.api_key_env,
            timeout_s=stage.timeout_s,
            max_connections=connections,
        )
    else:  # pragma: no cover - settings validation forbids it
        raise ConfigError(f"unknown provider {stage.provider!r}", key="provider")
    limiter = None
    if stage.requests_per_minute or stage.tokens_per_minute:
        limiter = RateLimiter(stage.requests_per_minute, stage.tokens_per_minute)
    return ResilientClient(
        inner,
        max_attempts=stage.max_attempts,
        timeout_s=stage.timeout_s,
        max_concurrency=stage.max_concurrency,
        limiter=limiter,
    )


class ClientPool:
    """Hands out one shared client per provider configuration; close it once at the end.

    Example::

        pool = ClientPool()
        describe = pool.get(settings.captioning.describe)
        revise = pool.get(settings.captioning.revise)   # same object if configured alike
        ...
        await pool.aclose()
    """

    def __init__(self) -> None:
        self._clients: dict[tuple[object, ...], LLMClient] = {}

    def get(self, stage: StageSettings, **offline: Any) -> LLMClient:
        """The client for ``stage``'s configuration, created on first use."""
        key = tuple(getattr(stage, name) for name in _CLIENT_KEYS)
        if key not in self._clients:
            self._clients[key] = make_client(stage, **offline)
        return self._clients[key]

    async def aclose(self) -> None:
        """Close every client."""
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.aclose()
