"""``/login`` and ``/logout``: a server-side session, its id in the browser's cookie."""

from __future__ import annotations

from typing import Annotated

from fastapi import Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from strategyq.api.auth import SESSION_COOKIE, check_csrf, match_token
from strategyq.api.deps import State
from strategyq.api.pages.render import render
from strategyq.api.routes import RouteTable
from strategyq.queue import sessions

router = RouteTable(include_in_schema=False)


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request, next: str = "/") -> Response:
    return render(request, "login.html", {"next": _safe_next(next), "error": None})


@router.post("/login")
def login(
    request: Request,
    state: State,
    token: Annotated[str, Form(max_length=500)] = "",
    csrf: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/",
) -> Response:
    check_csrf(request, csrf)
    matched = match_token(state.config, token) if state.config.auth_required else None
    if state.config.auth_required and matched is None:
        return render(
            request,
            "login.html",
            {"next": _safe_next(next), "error": "that token is not valid"},
            401,
        )
    response = RedirectResponse(_safe_next(next), status_code=303)
    if matched is not None:
        session_id = sessions.open_session(
            state.client, matched.name, matched.scope.value, matched.digest.hex()
        )
        response.set_cookie(
            SESSION_COOKIE,
            session_id,
            max_age=sessions.SESSION_TTL_S,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
    return response


@router.post("/logout")
def logout(request: Request, state: State, csrf: Annotated[str, Form()] = "") -> Response:
    check_csrf(request, csrf)
    session_id = request.cookies.get(SESSION_COOKIE)
    if session_id:
        sessions.close_session(state.client, session_id)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(
        SESSION_COOKIE, httponly=True, samesite="strict", secure=request.url.scheme == "https"
    )
    return response


def _safe_next(target: str) -> str:
    # Only same-site paths: an open redirect would let a link send users elsewhere
    # (a browser reads "/\\host" as "//host").
    if target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return "/"
