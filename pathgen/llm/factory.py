"""Build the HTTP client a stage's settings ask for (the offline provider lives in
:mod:`pathgen.stages.offline`: it runs the stages' CLIP baselines)."""

from __future__ import annotations

from pathgen.errors import ConfigError
from pathgen.llm.base import LLMClient
from pathgen.llm.ratelimit import RateLimiter
from pathgen.llm.resilient import ResilientClient
from pathgen.settings import StageSettings


def make_client(stage: StageSettings) -> LLMClient:
    """A new client for ``stage``: provider adapter + limits, timeout, retries, bound.

    Provider ``"offline"`` is built by :func:`pathgen.stages.offline.make_offline_client`.

    Example::

        client = make_client(settings.captioning.describe)
        try:
            result = await client.complete(request)
        finally:
            await client.aclose()
    """
    if stage.provider == "offline":
        raise ConfigError(
            "the offline provider runs CLIP locally: build it with "
            "pathgen.stages.offline.make_offline_client(stage, clip)",
            key="provider",
        )
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
