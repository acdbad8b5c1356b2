"""Login and logout pages (form POSTs, CSRF-checked)."""

from __future__ import annotations

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from pathgen.curation.accounts import authenticate, end_session, start_session
from pathgen.store.engine import session_scope
from pathgen.web.auth import SESSION_COOKIE, set_session_cookie
from pathgen.web.csrf import verify_csrf
from pathgen.web.render import render, safe_next

router = APIRouter()


@router.get("/login", response_class=HTMLResponse, name="login")
async def login_page(request: Request, next: str = Query("/")) -> HTMLResponse:  # noqa: A002
    context = {"next": safe_next(next, "/"), "error": None, "name": ""}
    return render(request, "login.html", context)


@router.post("/login", response_model=None)
async def login(
    request: Request,
    name: str = Form(..., max_length=128),
    password: str = Form(..., max_length=1024),
    next: str = Form("/"),  # noqa: A002 - the form field's name
) -> HTMLResponse | RedirectResponse:
    await verify_csrf(request)
    ttl = request.app.state.session_ttl
    async with session_scope(request.app.state.engine) as session:
        account = await authenticate(session, name, password)
        token = await start_session(session, account, ttl=ttl) if account else None
    if token is None:
        context = {"next": safe_next(next, "/"), "error": "wrong name or password", "name": name}
        return render(request, "login.html", context, status_code=401)
    response = RedirectResponse(safe_next(next, "/"), status_code=303)
    set_session_cookie(
        response,
        token,
        secure=request.url.scheme == "https",
        max_age=int(ttl.total_seconds()),
    )
    return response


@router.post("/logout")
async def logout(request: Request) -> RedirectResponse:
    await verify_csrf(request)
    token = request.cookies.get(SESSION_COOKIE, "")
    if token:
        async with session_scope(request.app.state.engine) as session:
            await end_session(session, token)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response
