"""Errors as ``application/problem+json`` (RFC 9457), with messages that say what to fix.

API routes raise :class:`Problem`; validation errors from FastAPI, our own
:class:`~strategyq.errors.StrategyqError` and Redis outages are turned into the
same shape. Dashboard pages get the same message as an HTML page.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import redis
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from strategyq.errors import (
    ConfigError,
    ConnectionFailed,
    ScheduleExists,
    ScheduleNotFound,
    StrategyqError,
    TaskValidationError,
    TenantQuotaExceeded,
)

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"

_Answer = Callable[[Request, "Problem"], Response]

_TITLES = {
    400: "Bad request",
    401: "Authentication required",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request body too large",
    415: "Unsupported media type",
    429: "Tenant over quota",
    422: "Invalid task or parameters",
    500: "Internal error",
    503: "Redis unavailable",
}


class ProblemModel(BaseModel):
    """An RFC 9457 problem document."""

    type: str = Field("about:blank", description="A URI naming the kind of problem.")
    title: str = Field(..., description="A short summary of the kind of problem.")
    status: int = Field(..., description="The HTTP status code.")
    detail: str = Field(..., description="What went wrong and what to do about it.")
    errors: list[dict[str, Any]] | None = Field(
        None, description="Per-field problems of a rejected request body or query."
    )


class Problem(Exception):
    """Raised by a route to answer with a problem document."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        title: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.title = title or _TITLES.get(status, "Error")
        self.errors = errors
        self.headers = headers or {}


def problem_response(problem: Problem) -> Response:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
    }
    if problem.errors is not None:
        body["errors"] = problem.errors
    return JSONResponse(
        body, status_code=problem.status, media_type=PROBLEM_JSON, headers=problem.headers
    )


def _wants_html(request: Request) -> bool:
    path = request.url.path
    if path.startswith(("/v1", "/healthz", "/readyz", "/metrics", "/openapi")):
        return False
    accept = request.headers.get("accept", "")
    return "text/html" in accept or "json" not in accept


def _where(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body",)]
    return ".".join(parts) or "body"


def validation_detail(errors: list[dict[str, Any]]) -> str:
    """One sentence listing what to fix in a rejected request."""
    pieces = []
    for err in errors[:5]:
        where = _where(err.get("loc", ()))
        msg = str(err.get("msg", "is invalid"))
        if err.get("type") == "missing":
            pieces.append(f"{where} is required")
        elif err.get("type") == "json_invalid":
            pieces.append(f"the body is not valid JSON ({err.get('ctx', {}).get('error', msg)})")
        else:
            pieces.append(f"{where}: {msg}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "request not accepted: " + "; ".join(pieces) + more + "; fix it and send it again"


def install(app: FastAPI, render_html: Any) -> None:
    """Register the handlers; ``render_html(request, problem)`` renders the page form."""

    def answer(request: Request, problem: Problem) -> Response:
        if _wants_html(request):
            response: Response = render_html(request, problem)
            return response
        return problem_response(problem)

    _install_request_errors(app, answer)
    _install_service_errors(app, answer)
    _install_fallbacks(app, answer)


def _install_request_errors(app: FastAPI, answer: _Answer) -> None:
    """Problems raised by the routes, rejected requests, and HTTP errors (404, 405, …)."""

    @app.exception_handler(Problem)
    async def on_problem(request: Request, exc: Problem) -> Response:
        return answer(request, exc)

    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, exc: RequestValidationError) -> Response:
        errors = [
            {
                "loc": [str(p) for p in e.get("loc", ())],
                "msg": str(e.get("msg")),
                "type": str(e.get("type")),
            }
            for e in exc.errors()
        ]
        return answer(request, Problem(422, validation_detail(errors), errors=errors))

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> Response:
        detail = str(exc.detail)
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"there is no route {request.url.path}; see /openapi.json"
        elif exc.status_code == 405:
            detail = f"{request.method} is not allowed on {request.url.path}; see /openapi.json"
        return answer(request, Problem(exc.status_code, detail, headers=dict(exc.headers or {})))


def _install_service_errors(app: FastAPI, answer: _Answer) -> None:
    """Invalid tasks and schedules, an unreachable or failing Redis, and a bad configuration."""

    @app.exception_handler(TaskValidationError)
    async def on_task(request: Request, exc: TaskValidationError) -> Response:
        return answer(request, Problem(422, str(exc)))

    @app.exception_handler(TenantQuotaExceeded)
    async def on_quota(request: Request, exc: TenantQuotaExceeded) -> Response:
        headers = {"Retry-After": str(exc.retry_after_s)}
        return answer(request, Problem(429, str(exc), headers=headers))

    @app.exception_handler(ScheduleNotFound)
    async def on_no_schedule(request: Request, exc: ScheduleNotFound) -> Response:
        return answer(request, Problem(404, str(exc)))

    @app.exception_handler(ScheduleExists)
    async def on_schedule_exists(request: Request, exc: ScheduleExists) -> Response:
        return answer(request, Problem(409, str(exc)))

    @app.exception_handler(ConnectionFailed)
    async def on_connection(request: Request, exc: ConnectionFailed) -> Response:
        return answer(request, Problem(503, str(exc), headers={"Retry-After": "5"}))

    @app.exception_handler(redis.RedisError)
    async def on_redis(request: Request, exc: redis.RedisError) -> Response:
        log.warning("Redis error on %s %s: %s", request.method, request.url.path, exc)
        detail = (
            f"the API could not talk to Redis ({type(exc).__name__}); the request was not "
            "completed: try again in a few seconds"
        )
        return answer(request, Problem(503, detail, headers={"Retry-After": "5"}))

    @app.exception_handler(ConfigError)
    async def on_config(request: Request, exc: ConfigError) -> Response:
        return answer(request, Problem(500, str(exc)))


def _install_fallbacks(app: FastAPI, answer: _Answer) -> None:
    """Any other exception (a bug: 500) and any other strategyq error (422)."""

    @app.exception_handler(Exception)
    async def on_bug(request: Request, exc: Exception) -> Response:
        log.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
        detail = (
            "the API failed unexpectedly on this request (the server's log has the traceback); "
            "nothing was changed by it unless its reply said so"
        )
        return answer(request, Problem(500, detail))

    @app.exception_handler(StrategyqError)
    async def on_ours(request: Request, exc: StrategyqError) -> Response:
        return answer(request, Problem(422, str(exc)))
