"""Who is asking: bearer tokens (or the dashboard's cookie), scopes, CSRF and origin checks.

With no token configured (loopback bind) every caller has the write scope.
Otherwise ``Authorization: Bearer <secret>`` is hashed and compared in
constant time with every configured digest. A browser logs in once: the login
page checks the token the same way and opens a server-side session
(:mod:`strategyq.queue.sessions`); the ``strategyq_session`` cookie holds only
that session's random id, so logging out revokes it, and a token removed from
the configuration ends its sessions too.

Browsers are kept from acting for another site: every state-changing request
that carries an ``Origin`` of another host is refused, dashboard forms carry a
CSRF token (double-submit: a random cookie echoed in a hidden field), and the
session cookie is ``HttpOnly`` and ``SameSite=Strict``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

from fastapi import Request

from strategyq.api.config import ApiConfig, ApiToken, Scope
from strategyq.api.problems import Problem
from strategyq.queue.sessions import read_session

SESSION_COOKIE = "strategyq_session"
CSRF_COOKIE = "strategyq_csrf"
CSRF_FIELD = "csrf"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Principal:
    """The caller: a token's name and scope (``local`` with write scope when auth is off)."""

    name: str
    scope: Scope

    @property
    def can_write(self) -> bool:
        return self.scope is Scope.WRITE


LOCAL = Principal("local", Scope.WRITE)


def _match(tokens: tuple[ApiToken, ...], secret: str) -> ApiToken | None:
    digest = hashlib.sha256(secret.encode()).digest()
    found: ApiToken | None = None
    # Compare with every token, without stopping early, so timing tells nothing.
    for token in tokens:
        if hmac.compare_digest(digest, token.digest):
            found = token
    return found


def match_token(config: ApiConfig, secret: str) -> ApiToken | None:
    """The configured token whose secret this is (constant-time over every token)."""
    return _match(config.tokens, secret)


def presented_secret(request: Request) -> str | None:
    """The bearer token, or the session cookie's id, the request carries."""
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip()
    return request.cookies.get(SESSION_COOKIE)


def identify(config: ApiConfig, request: Request) -> Principal | None:
    """The caller's principal, or None when a token is needed and none valid was given."""
    if not config.auth_required:
        return LOCAL
    header = request.headers.get("authorization", "")
    if header[:7].lower() == "bearer ":
        token = _match(config.tokens, header[7:].strip())
        return Principal(token.name, token.scope) if token else None
    session_id = request.cookies.get(SESSION_COOKIE)
    if not session_id:
        return None
    session = read_session(request.app.state.api.client, session_id)
    if session is None:
        return None
    # The token that opened the session must still be configured, with the same scope.
    for token in config.tokens:
        if token.digest.hex() == session.token_digest and token.scope.value == session.scope:
            return Principal(token.name, token.scope)
    return None


def authorize(config: ApiConfig, request: Request, scope: Scope) -> Principal:
    """The caller, when it holds ``scope``; records it on ``request.state`` for the pages.

    Raises:
        Problem: 401 without a valid token, 403 when a write needs a write-scope token.
    """
    principal = identify(config, request)
    if principal is None:
        given = presented_secret(request) is not None
        bearer = request.headers.get("authorization", "")[:7].lower() == "bearer "
        if given and not bearer:
            detail = "the dashboard session ended (logged out, expired or its token removed): "
            detail += "log in again at /login"
        elif given:
            detail = (
                "the token is not valid: check the secret (it is shown once, by "
                "`strategyq serve --new-token`)"
            )
        else:
            detail = (
                "this API needs a token: send 'Authorization: Bearer <token>' (or log in at /login)"
            )
        raise Problem(
            401,
            detail,
            headers={"WWW-Authenticate": 'Bearer realm="strategyq"'},
        )
    if scope is Scope.WRITE and not principal.can_write:
        raise Problem(
            403,
            f"token {principal.name!r} has the read scope; this needs a write-scope token",
        )
    request.state.principal = principal
    return principal


def check_origin(request: Request) -> None:
    """Refuse a state-changing browser request sent from another site."""
    if request.method in SAFE_METHODS:
        return
    if request.headers.get("sec-fetch-site") == "cross-site":
        raise Problem(403, "cross-site requests are refused; use the dashboard or the API")
    origin = request.headers.get("origin")
    if origin is None:
        return  # not a browser (curl, a backend): nothing to forge
    if origin == "null" or urlsplit(origin).netloc != request.headers.get("host", ""):
        raise Problem(
            403, f"requests from {origin} are refused: the dashboard only accepts its own forms"
        )


def csrf_token(request: Request) -> str:
    """The caller's CSRF token (the cookie's value, or a new one the response must set)."""
    token = request.cookies.get(CSRF_COOKIE)
    if token and len(token) >= 32:
        return token
    cached: str | None = getattr(request.state, "new_csrf", None)
    if cached is None:
        cached = secrets.token_urlsafe(32)
        request.state.new_csrf = cached
    return cached


def check_csrf(request: Request, submitted: str | None) -> None:
    cookie = request.cookies.get(CSRF_COOKIE)
    if not cookie or not submitted or not hmac.compare_digest(cookie, submitted):
        raise Problem(
            403,
            "the form's CSRF token is missing or stale: reload the page and submit it again",
        )
