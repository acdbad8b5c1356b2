"""API keys come only from the environment variable a stage names; never logged.

``api_key_env`` in a stage's settings:

* unset: the provider's own variable (``OPENAI_API_KEY``, ``MISTRAL_API_KEY``);
* ``"NAME"``: that variable, which must be set (an empty value counts as unset);
* ``""`` (explicitly empty): no key, for keyless local servers (vLLM, Ollama,
  llama.cpp); the SDKs insist on a key, so a placeholder is sent.
"""

from __future__ import annotations

import os

from pathgen.errors import ConfigError

#: Sent to keyless servers (``api_key_env = ""``): the SDKs insist on some key.
PLACEHOLDER_KEY = "not-needed"
#: The variable each provider reads when a stage sets no ``api_key_env``.
DEFAULT_KEY_ENV = {"openai": "OPENAI_API_KEY", "mistral": "MISTRAL_API_KEY"}


def key_env(api_key_env: str | None, provider: str) -> str:
    """The variable a stage's key comes from (``""``: the stage needs no key)."""
    return DEFAULT_KEY_ENV[provider] if api_key_env is None else api_key_env


def api_key(env_name: str, *, provider: str) -> str:
    """The key in ``$env_name`` (``env_name == ""``: keyless, a placeholder).

    Raises :class:`ConfigError` naming the variable when it is unset or empty.
    """
    if env_name == "":
        return PLACEHOLDER_KEY
    value = os.environ.get(env_name, "").strip()
    if value:
        return value
    raise ConfigError(
        f"{provider}: no API key: the environment variable {env_name} is not set "
        '(export it, or set api_key_env = "" for a server that needs no key)',
        key="api_key_env",
    )
