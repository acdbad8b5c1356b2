"""The curation web app: ``create_app(settings)`` builds it; ``pathgen serve`` serves it.

The lifespan opens one database engine (``settings.database.url``), one
:class:`~pathgen.slides.SlideCache` for thumbnails and one CLIP model cache for search
by meaning, and closes them on shutdown.

Example::

    app = create_app(load_settings(), reviewer="ana", allowed_hosts=["curation.lab.org"])
    uvicorn.run(app, host="127.0.0.1", port=8000)

Every response carries a Content-Security-Policy (scripts and styles only from
``/static``), and requests for a ``Host`` not on the allow-list get 400.
"""

from __future__ import annotations

import getpass
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from datetime import timedelta
from urllib.parse import urlencode

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import PlainTextResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.exceptions import HTTPException as StarletteHTTPException

from pathgen.errors import StoreError
from pathgen.settings import Settings
from pathgen.slides import SlideCache
from pathgen.store import migrate
from pathgen.store.engine import make_engine
from pathgen.web import actions, instruct, login, media, pages, review_queue
from pathgen.web.auth import CSP, LOOPBACK_HOSTS, PUBLIC_PREFIXES, host_allowed, identify
from pathgen.web.csrf import request_token, set_token_cookie
from pathgen.web.render import STATIC_DIR, make_templates, render
from pathgen.web.semantic import ClipModels

log = logging.getLogger(__name__)


def default_reviewer() -> str:
    """``$USER`` (or the login name), used until a curator types a name."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "curator"


async def check_schema(engine: AsyncEngine) -> None:
    """Raise :class:`StoreError` unless the database schema is at the current head."""
    current = await migrate.current(engine)
    head = migrate.head()
    if current != head:
        at = current or "empty (no schema)"
        raise StoreError(
            f"database is at revision {at}, the web UI needs {head}: run `pathgen db upgrade`"
        )


def create_app(
    settings: Settings,
    *,
    reviewer: str | None = None,
    slide_cache_size: int = 16,
    allowed_hosts: Iterable[str] = LOOPBACK_HOSTS,
    behind_https: bool = False,
    session_ttl: timedelta = timedelta(hours=12),
) -> FastAPI:
    """The curation app for the database named by ``settings.database.url``.

    ``allowed_hosts``: the names (without port) browsers may use for this server;
    ``behind_https``: a TLS proxy is in front, so URLs are ``https`` and cookies ``Secure``;
    ``reviewer``: the name reviews are recorded under while the database has no accounts.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = make_engine(settings.database.url, echo=settings.database.echo, create=False)
        try:
            await check_schema(engine)
            app.state.engine = engine
            app.state.slides = SlideCache(max_open=slide_cache_size)
            app.state.clip_models = ClipModels()
            yield
        finally:
            await engine.dispose()

    app = FastAPI(title="pathgen curation", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.settings = settings
    app.state.templates = make_templates()
    app.state.default_reviewer = (reviewer or default_reviewer()).strip() or "curator"
    app.state.session_ttl = session_ttl
    hosts = frozenset(h.strip().lower() for h in allowed_hosts if h.strip())
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(login.router)
    app.include_router(pages.router)
    app.include_router(media.router)
    app.include_router(actions.router)
    app.include_router(instruct.router)
    app.include_router(review_queue.router)

    def _headers(response: Response) -> Response:
        response.headers.setdefault("Content-Security-Policy", CSP)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response

    @app.middleware("http")
    async def guard(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if not host_allowed(request, hosts):
            return _headers(PlainTextResponse("400 Bad Request: host not allowed", 400))
        if behind_https:
            request.scope["scheme"] = "https"
        token, new = request_token(request)
        request.state.csrf_token = token
        path = request.url.path
        public = path.startswith(PUBLIC_PREFIXES)
        user = None if path.startswith("/static/") else await identify(request)
        request.state.user = user
        if user is None and not public:
            here = path + (f"?{request.url.query}" if request.url.query else "")
            target = "/login?" + urlencode({"next": here})
            response: Response = RedirectResponse(target, status_code=303)
        else:
            response = await call_next(request)
        if new:
            set_token_cookie(response, token, secure=request.url.scheme == "https")
        return _headers(response)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        title = {404: "Not found", 403: "Forbidden", 400: "Bad request"}.get(
            exc.status_code, "Error"
        )
        return render(
            request,
            "error.html",
            {"title": title, "status": exc.status_code, "message": str(exc.detail)},
            status_code=exc.status_code,
        )

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> Response:
        errors = exc.errors()
        if errors and all(e.get("loc", ("",))[0] == "path" for e in errors):
            # /tiles/<not an id the database can hold>/...: nothing is there
            title, status, message = "Not found", 404, f"nothing at {request.url.path}"
        else:
            first = errors[0] if errors else {}
            where = ".".join(str(p) for p in first.get("loc", ()))
            title, status = "Bad request", 400
            message = f"{where}: {first.get('msg', 'invalid request')}"
        return render(
            request,
            "error.html",
            {"title": title, "status": status, "message": message},
            status_code=status,
        )

    return app
