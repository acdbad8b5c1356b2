"""CSRF protection for the web UI's forms: a double-submit token plus an origin check.

Every response to a browser without a token cookie sets one (random, HttpOnly,
SameSite=Lax). Pages put the same value in a hidden ``csrf_token`` field of each
form. A POST is accepted only when the field matches the cookie (constant-time
compare) and, when the browser says where the request came from (``Origin`` or
``Sec-Fetch-Site``), it came from this site. Another site can neither read the
cookie nor make the browser send a matching field.

Example::

    @app.post("/x")
    async def x(request: Request) -> Response:
        await verify_csrf(request)
"""

from __future__ import annotations

import hmac
import re
import secrets

from fastapi import HTTPException, Request, Response

COOKIE = "pathgen_csrf"
FIELD = "csrf_token"
_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{32,128}$")


def request_token(request: Request) -> tuple[str, bool]:
    """The browser's token, or a fresh one; the flag says whether it is new."""
    token = request.cookies.get(COOKIE, "")
    if _TOKEN_RE.match(token):
        return token, False
    return secrets.token_urlsafe(32), True


def set_token_cookie(response: Response, token: str, *, secure: bool) -> None:
    response.set_cookie(
        COOKIE, token, httponly=True, samesite="lax", secure=secure, path="/", max_age=None
    )


def _same_origin(request: Request) -> bool:
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    expected = f"{request.url.scheme}://{request.headers.get('host', '')}"
    return origin == expected


async def verify_csrf(request: Request) -> None:
    """Refuse (403) a state-changing request that did not come from one of our own forms."""
    cookie = request.cookies.get(COOKIE, "")
    form = await request.form()
    sent = form.get(FIELD)
    if not isinstance(sent, str) or not _TOKEN_RE.match(cookie):
        raise HTTPException(403, "missing CSRF token: reload the page and submit the form again")
    if not hmac.compare_digest(sent.encode(), cookie.encode()):
        raise HTTPException(403, "CSRF token mismatch: reload the page and submit the form again")
    if not _same_origin(request):
        raise HTTPException(403, "cross-site form submission refused")
