"""``/login`` and ``/logout``: the token cookie."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from strategyq.api.auth import TOKEN_COOKIE, _match, check_csrf
from strategyq.api.deps import State
from strategyq.api.pages.render import render

router = APIRouter(include_in_schema=False)


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
    if state.config.auth_required and _match(state.config.tokens, token) is None:
        return render(
            request,
            "login.html",
            {"next": _safe_next(next), "error": "that token is not valid"},
            401,
        )
    response = RedirectResponse(_safe_next(next), status_code=303)
    if state.config.auth_required:
        response.set_cookie(
            TOKEN_COOKIE,
            token,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
    return response


@router.post("/logout")
def logout(request: Request, csrf: Annotated[str, Form()] = "") -> Response:
    check_csrf(request, csrf)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(TOKEN_COOKIE)
    return response


def _safe_next(target: str) -> str:
    # Only same-site paths: an open redirect would let a link send users elsewhere.
    return target if target.startswith("/") and not target.startswith("//") else "/"
