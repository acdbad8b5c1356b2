"""Template rendering shared by the web routes: the Jinja2 environment, links.

Autoescaping is on for every template; model text is never marked safe (diff markup
escapes the words itself, see :mod:`pathgen.web.diffs`).
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

TEMPLATES_DIR = Path(os.fspath(resources.files("pathgen.web") / "templates"))
STATIC_DIR = Path(os.fspath(resources.files("pathgen.web") / "static"))


def make_templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["money"] = _money
    env.filters["count"] = _count
    env.filters["when"] = _when
    env.filters["urlpart"] = lambda v: quote(str(v), safe="")
    env.globals["query"] = query_url
    return Jinja2Templates(env=env)


def _money(value: float | None) -> str:
    value = value or 0.0
    if value == 0:
        return "$0"
    return f"${value:,.4f}" if value < 1 else f"${value:,.2f}"


def _count(value: int | None) -> str:
    return f"{value or 0:,}"


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value is not None else "-"


def query_url(path: str, params: dict[str, Any] | None = None, /, **more: Any) -> str:
    """``path?k=v`` with the params that are set (URL-encoded)."""
    clean = {k: v for k, v in {**(params or {}), **more}.items() if v is not None and v != ""}
    return f"{path}?{urlencode(clean)}" if clean else path


def render(
    request: Request, name: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    """Render template ``name`` with the CSRF token and the user every page needs."""
    ctx = {
        "csrf_token": request.state.csrf_token,
        "user": getattr(request.state, "user", None),
        **context,
    }
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(request, name, ctx, status_code=status_code)


def safe_next(target: str | None, fallback: str) -> str:
    """A local redirect target (a path on this site), else ``fallback``."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return fallback
