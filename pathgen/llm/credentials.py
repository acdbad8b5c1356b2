"""API keys come only from the environment variable a stage names; never logged."""

from __future__ import annotations

import os

from pathgen.errors import ConfigError

#: Sent when a local OpenAI-compatible server needs no key (the SDKs insist on one).
PLACEHOLDER_KEY = "not-needed"
#: Hosted APIs that always need a real key.
HOSTED_APIS = ("api.openai.com", "mistral.ai")


def api_key(env_name: str, *, base_url: str | None, provider: str) -> str:
    """Read the key from ``$env_name``; a local ``base_url`` may go without one.

    Raises :class:`ConfigError` naming the variable when the provider's own API is
    used (no ``base_url``, or a hosted API's URL) and the variable is unset.
    """
    value = os.environ.get(env_name, "").strip()
    if value:
        return value
    if base_url and not any(host in base_url for host in HOSTED_APIS):
        return PLACEHOLDER_KEY
    raise ConfigError(
        f"{provider}: no API key: set the environment variable {env_name} "
        "(or set base_url for a local OpenAI-compatible server)",
        key="api_key_env",
    )
