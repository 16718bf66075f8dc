"""``strategyq serve``: one ASGI app with the ``/v1`` API, the dashboard and ``/metrics``.

Stack: FastAPI on uvicorn (typed routes give the OpenAPI document for free,
which schemathesis then checks against the live app), Jinja2 pages rendered on
the server, and plotly.js's cartesian bundle, shipped in the package and served by
the app itself — no CDN, no build step, works offline. The app holds Redis credentials and never
runs user code.
"""

from __future__ import annotations

import logging
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from strategyq import __version__
from strategyq.api import pages, probes, v1
from strategyq.api.auth import check_origin
from strategyq.api.config import ApiConfig, is_loopback
from strategyq.api.headers import SecurityHeadersMiddleware
from strategyq.api.metrics import MetricsMiddleware
from strategyq.api.pages.render import STATIC_DIR, render_problem
from strategyq.api.problems import PROBLEM_JSON, Problem, ProblemModel, install, problem_response
from strategyq.api.state import ApiState
from strategyq.connection import connect
from strategyq.settings import Settings

log = logging.getLogger(__name__)

ERROR_CODES = ("401", "403", "404", "413", "415", "422", "503")
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]", "::1")


class _TooLarge(Exception):
    pass


class GuardMiddleware:
    """Caps request bodies, refuses foreign Host headers on a loopback bind, checks Origin."""

    def __init__(self, app: ASGIApp, config: ApiConfig) -> None:
        self.app = app
        self.max_body = config.max_body_bytes
        self.hosts: frozenset[str] | None = None
        if is_loopback(config.host) and not config.auth_required:
            # A web page's scripts can reach 127.0.0.1 through a DNS name they control
            # (DNS rebinding); its requests then carry that name as Host.
            self.hosts = frozenset((*LOOPBACK_NAMES, config.host, *config.extra_hosts))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        problem = self._refuse(scope, headers)
        if problem is not None:
            await problem_response(problem)(scope, receive, send)
            return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise _TooLarge
            return message

        async def sending(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted, sending)
        except _TooLarge:
            if not started:
                await problem_response(self._too_large())(scope, receive, send)

    def _too_large(self) -> Problem:
        return Problem(
            413,
            f"the request body is larger than {self.max_body} bytes (STRATEGYQ_API_MAX_BODY): "
            "send less strategy code or fewer symbols",
        )

    def _refuse(self, scope: Scope, headers: dict[str, str]) -> Problem | None:
        if self.hosts is not None:
            host = headers.get("host", "")
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            if name not in self.hosts:
                return Problem(
                    400,
                    f"Host {host!r} is not this server's name; open the dashboard at "
                    "http://127.0.0.1 (or set STRATEGYQ_API_ALLOWED_HOSTS)",
                )
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            return self._too_large()
        request = Request(scope)
        try:
            check_origin(request)
        except Problem as problem:
            return problem
        if (
            scope.get("method") in ("POST", "PUT", "PATCH")
            and str(scope.get("path", "")).startswith("/v1/")
            and headers.get("content-length", "0") not in ("", "0")
            and not headers.get("content-type", "").startswith("application/json")
        ):
            return Problem(415, "send the body as JSON with 'Content-Type: application/json'")
        return None


def _openapi(app: FastAPI, auth_required: bool) -> dict[str, Any]:
    """The generated schema, with every error answered as problem+json."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = ProblemModel.model_json_schema(
        ref_template="#/components/schemas/{model}"
    )
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    ref = {"$ref": "#/components/schemas/Problem"}
    for path, methods in schema.get("paths", {}).items():
        for operation in methods.values():
            responses = operation.setdefault("responses", {})
            for code in ERROR_CODES:
                if code == "404" and "{" not in path and not path.startswith("/v1"):
                    continue
                responses[code] = {
                    "description": problem_description(code),
                    "content": {PROBLEM_JSON: {"schema": ref}},
                }
            if auth_required and path.startswith("/v1"):
                operation.setdefault("security", [{"bearer": []}])
    if auth_required:
        # Only a server with STRATEGYQ_API_TOKENS asks for a token; a loopback bind
        # without tokens admits every caller, and its document says so.
        schema["components"]["securitySchemes"] = {
            "bearer": {
                "type": "http",
                "scheme": "bearer",
                "description": "A token of STRATEGYQ_API_TOKENS (read or write scope).",
            }
        }
    app.openapi_schema = schema
    return schema


def problem_description(code: str) -> str:
    return {
        "401": "No valid token.",
        "403": "The token's scope does not allow this, or a cross-site request.",
        "404": "No such task or entry.",
        "413": "The request body is too large.",
        "415": "The body is not JSON.",
        "422": "The task or a parameter is invalid; nothing was queued.",
        "503": "Redis is unavailable.",
    }[code]


def create_app(settings: Settings, config: ApiConfig, client: redis.Redis | None = None) -> FastAPI:
    """The ASGI app for ``settings``' Redis and ``config``'s address and tokens.

    Raises:
        ConfigError: the address/tokens combination is unsafe.
        ConnectionFailed: Redis cannot be reached.
    """
    config.check()
    if client is None:
        client = connect(settings, decode_responses=False)
    state = ApiState(settings=settings, config=config, client=client)
    app = FastAPI(
        title="strategyq",
        version=__version__,
        description="Queue backtests and screens, follow them, read their results; "
        "inspect the queue, its workers and dead letters.",
        # FastAPI's /docs page loads Swagger UI from a CDN: the app serves nothing that
        # needs the network, so the document is served as JSON only.
        docs_url=None,
        redoc_url=None,
    )
    app.state.api = state
    app.openapi = lambda: _openapi(app, config.auth_required)  # type: ignore[method-assign]
    install(app, render_problem)
    # Declared on the app itself, in this order: each route is built once (see RouteTable).
    for table in (*v1.RESOURCES, *pages.PAGES, probes.router):
        table.add_to(app.router)
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    app.add_middleware(GuardMiddleware, config=config)
    app.add_middleware(MetricsMiddleware, metrics=state.metrics)
    app.add_middleware(SecurityHeadersMiddleware)
    return app
