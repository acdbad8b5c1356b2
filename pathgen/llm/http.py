"""The HTTP client both SDK adapters send through: aiohttp, pooled, measured cheapest."""

from __future__ import annotations

import httpx2
import openai


def pooled_http_client(timeout_s: float, max_connections: int) -> openai.DefaultAioHttpClient:
    """One aiohttp-backed client with ``max_connections`` kept alive and a ``timeout_s``
    budget per call (connecting gets at most 10 s of it)."""
    limits = httpx2.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections
    )
    timeout = httpx2.Timeout(timeout_s, connect=min(timeout_s, 10.0))
    return openai.DefaultAioHttpClient(limits=limits, timeout=timeout)
