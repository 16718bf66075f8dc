"""The dashboard: server-rendered pages (Jinja2) over the same reads and writes as ``/v1``.

JavaScript is used only where a page must change by itself: drawing the
plotly charts and following a running task (an ``EventSource`` on the task's
``/v1`` event stream, then one reload when it ends). Tables sort and page on
the server, through links.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, urlencode

import orjson
from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from strategyq.api import charts, reads
from strategyq.api.auth import (
    CSRF_COOKIE,
    SESSION_COOKIE,
    Principal,
    check_csrf,
    csrf_token,
    identify,
    match_token,
    requirement,
)
from strategyq.api.config import Scope
from strategyq.api.problems import Problem
from strategyq.api.routes import strip_source
from strategyq.api.shapes import clean_record
from strategyq.api.state import ApiState
from strategyq.client import cancel_task, submit_task
from strategyq.errors import TaskValidationError
from strategyq.protocol import TERMINAL_STATUSES, TaskType
from strategyq.queue import admin, sessions

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
TEMPLATES = Jinja2Templates(directory=str(HERE / "templates"))
PAGE_SIZE = 50
TABLE_PAGE = 25
FORM_NUMBERS = (
    "hold_days",
    "stop_loss_pct",
    "take_profit_pct",
    "commission_bps",
    "slippage_bps",
    "initial_capital",
    "max_positions",
    "trailing_stop_pct",
    "max_entries_per_ticker",
    "timeout_seconds",
)
FORM_TEXTS = ("entry", "exit_on", "benchmark")
INTEGER_FIELDS = (
    "hold_days",
    "max_positions",
    "max_entries_per_ticker",
    "limit",
    "lookback_sessions",
)


_SCRIPT_ESCAPES = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def script_json(value: Any) -> str:
    """JSON safe to place inside a ``<script type="application/json">`` element.

    Every ``<``, ``>`` and ``&`` is written as a ``\\u`` escape (the same JSON),
    so no string in the data can end the element or open a comment or another
    script (``</script>``, ``<!--<script>``) whatever the page around it.
    """
    return orjson.dumps(value).decode().translate(_SCRIPT_ESCAPES)


def fmt(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "—" if value is None else str(value).lower()
    if isinstance(value, float):
        return f"{value:,.4f}" if math.isfinite(value) else "—"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    return str(value)


def ms_iso(value: Any) -> str:
    """Epoch milliseconds as ``2024-01-15 10:30:00Z``."""
    try:
        moment = datetime.fromtimestamp(int(value) / 1000, UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        return ""
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


TEMPLATES.env.filters["fmt"] = fmt
TEMPLATES.env.filters["ms_iso"] = ms_iso
TEMPLATES.env.filters["json"] = lambda v: orjson.dumps(v).decode()
TEMPLATES.env.globals["quote"] = quote


def render(
    request: Request, name: str, context: dict[str, Any], status_code: int = 200
) -> Response:
    state: ApiState = request.app.state.api
    principal = getattr(request.state, "principal", None) or identify(state.config, request)
    token = csrf_token(request)
    response = TEMPLATES.TemplateResponse(
        request,
        name,
        {
            "principal": principal,
            "auth_required": state.config.auth_required,
            "csrf": token,
            "queue": state.queue,
            **context,
        },
        status_code=status_code,
    )
    if getattr(request.state, "new_csrf", None):
        response.set_cookie(
            CSRF_COOKIE,
            token,
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
    return response


def render_problem(request: Request, problem: Problem) -> Response:
    if problem.status == 401:
        # The page to come back to, without anything that looks like a credential:
        # a token pasted into a URL must not travel on into another URL, a log or history.
        kept = [(k, v) for k, v in request.query_params.multi_items() if not _secret_name(k)]
        target = request.url.path + (f"?{urlencode(kept)}" if kept else "")
        return RedirectResponse("/login?" + urlencode({"next": target}), status_code=303)
    return render(request, "error.html", {"problem": problem}, status_code=problem.status)


class Table:
    """A server-side sorted, paged view of a list of dict rows."""

    def __init__(
        self,
        name: str,
        rows: Sequence[Mapping[str, Any]],
        query: Mapping[str, str],
        size: int = TABLE_PAGE,
        columns: list[str] | None = None,
    ) -> None:
        self.name = name
        self.total = len(rows)
        self.columns = columns or list(dict.fromkeys(k for r in rows[:100] for k in r))
        self.sort = query.get(f"{name}_sort") or ""
        self.desc = query.get(f"{name}_dir") == "desc"
        self.query = dict(query)
        ordered = list(rows)
        if self.sort in self.columns:
            ordered.sort(key=lambda r: _sort_key(r.get(self.sort)), reverse=self.desc)
        self.pages = max(1, math.ceil(self.total / size))
        try:
            self.page = min(max(int(query.get(f"{name}_page") or 1), 1), self.pages)
        except ValueError:
            self.page = 1
        self.rows = ordered[(self.page - 1) * size : self.page * size]

    def link(self, **changes: Any) -> str:
        query = {**self.query}
        for key, value in changes.items():
            query[f"{self.name}_{key}"] = str(value)
        return "?" + urlencode(query) + f"#{self.name}"

    def sort_link(self, column: str) -> str:
        desc = not self.desc if column == self.sort else False
        return self.link(sort=column, dir="desc" if desc else "asc", page=1)


def _sort_key(value: Any) -> tuple[int, Any]:
    if value is None:
        return (2, 0)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (0, value)
    return (1, str(value))


def _timeline(record: Mapping[str, Any]) -> list[tuple[str, str]]:
    data = record.get("data") or {}
    steps = [
        ("queued", data.get("queued_at")),
        ("started", data.get("started_at")),
        ("cancelled", data.get("cancelled_at")),
        ("finished", data.get("completed_at")),
    ]
    out = [(name, str(at)) for name, at in steps if at]
    out.append((f"last update ({record.get('status')})", str(record.get("updated_at") or "")))
    return out


def _logs(data: Mapping[str, Any]) -> str | None:
    logs = data.get("logs")
    if logs is None:
        return None
    if isinstance(logs, list):
        return "\n".join(str(line) for line in logs)
    if isinstance(logs, dict):
        text = logs.get("text") or logs.get("lines") or ""
        return "\n".join(text) if isinstance(text, list) else str(text)
    return str(logs)


def task_context(
    state: ApiState, record: dict[str, Any], query: Mapping[str, str]
) -> dict[str, Any]:
    """What the task page and the HTML report show for one result."""
    record = clean_record(record)
    data = record["data"]
    status = record.get("status")
    mode = data.get("execution_mode")
    metrics = data.get("performance_metrics") or {}
    context: dict[str, Any] = {
        "record": record,
        "data": data,
        "status": status,
        "terminal": status in TERMINAL_STATUSES,
        "mode": mode,
        "metrics": metrics,
        "summary": data.get("summary") or {},
        "timeline": _timeline(record),
        "logs": _logs(data),
        "warnings": data.get("warnings") or [],
        "equity": None,
        "prices": {},
        "trades": None,
        "instances": None,
        "ranked": None,
    }
    if status == "completed" and mode == "backtest":
        figure = charts.equity_figure(data)
        context["equity"] = script_json(figure) if figure else None
        trade_model = (data.get("summary") or {}).get("trade_model") or {}
        adjusted = bool(trade_model.get("adjusted", True))
        context["prices"] = {
            ticker: script_json(fig)
            for ticker, fig in charts.price_figures(
                data, state.market_dir, adjusted=adjusted
            ).items()
        }
        context["trades"] = Table("trades", data.get("trades") or [], query)
        context["instances"] = Table("instances", data.get("instances") or [], query)
    elif status == "completed" and mode == "screening":
        context["ranked"] = Table("ranked", data.get("ranked_results") or [], query, size=100)
    return context


def _form_message(form: Mapping[str, str]) -> dict[str, Any]:
    """A wire task from the submit form's fields (validated later by ``submit_task``)."""
    task_type = form.get("task_type", "backtest")
    args: dict[str, Any] = {"strategy_code": form.get("strategy_code", "")}
    symbols = [
        s.strip() for s in form.get("symbols", "").replace("\n", ",").split(",") if s.strip()
    ]
    if task_type == TaskType.SCREENING:
        args["universe"] = symbols
        for name in ("limit", "lookback_sessions"):
            if form.get(name):
                args[name] = _number(name, form[name])
        if form.get("as_of"):
            args["as_of"] = form["as_of"]
    else:
        args["symbols"] = symbols
        args["start_date"] = form.get("start_date", "")
        args["end_date"] = form.get("end_date", "")
        for name in FORM_TEXTS:
            if form.get(name):
                args[name] = form[name].strip()
        if form.get("hold_days", "").strip().lower() == "none":
            args["hold_days"] = None  # no limit: held until an exit instance or a stop
            form = {**form, "hold_days": ""}
        for name in (*FORM_NUMBERS, "lookback_sessions"):
            if form.get(name):
                args[name] = _number(name, form[name])
    return {
        "task_id": form.get("task_id") or str(uuid.uuid4()),
        "task_type": task_type,
        "args": args,
    }


def _number(name: str, text: str) -> int | float:
    try:
        value = float(text)
    except ValueError:
        raise TaskValidationError(f"{name} must be a number, got {text!r}") from None
    if name in INTEGER_FIELDS and value.is_integer():
        return int(value)
    return value


SUBMIT_FIELDS = (
    "task_type",
    "task_id",
    "strategy_code",
    "symbols",
    "start_date",
    "end_date",
    *FORM_TEXTS,
    *FORM_NUMBERS,
    "limit",
    "as_of",
    "lookback_sessions",
)


def build(state: ApiState) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    viewer = Depends(requirement(state.config, Scope.READ))
    writer = Depends(requirement(state.config, Scope.WRITE))
    _add_overview(router, state, viewer)
    _add_task_list(router, state, viewer)
    _add_task_page(router, state, viewer, writer)
    _add_submit(router, state, writer)
    _add_dead_letters(router, state, viewer, writer)
    _add_login(router, state)
    return router


def _add_overview(router: APIRouter, state: ApiState, viewer: Any) -> None:
    """``/``: the queue overview with its throughput chart."""
    client = state.client

    @router.get("/", response_class=HTMLResponse)
    def overview(request: Request, _: Principal = viewer) -> Response:
        stats = reads.overview(client, state.queue)
        figure = _throughput_figure(stats["throughput"])
        return render(
            request,
            "overview.html",
            {
                "stats": stats,
                "throughput": script_json(figure),
                "refresh": request.query_params.get("refresh") != "0",
            },
        )


def _add_task_list(router: APIRouter, state: ApiState, viewer: Any) -> None:
    """``/tasks``: recent finished tasks, filtered, searched and paged."""
    client = state.client

    @router.get("/tasks", response_class=HTMLResponse)
    def tasks(
        request: Request,
        status: Annotated[str | None, Query()] = None,
        task_type: Annotated[str | None, Query()] = None,
        q: Annotated[str | None, Query(max_length=200)] = None,
        page: Annotated[int, Query(ge=1, le=100_000)] = 1,
        _: Principal = viewer,
    ) -> Response:
        status = status or None
        task_type = task_type or None
        if q:
            if reads.task_record(client, q.strip()) is not None:
                return RedirectResponse(f"/tasks/{quote(q.strip())}", status_code=303)
            found = reads.search_tasks(client, q, PAGE_SIZE)
            total, rows = len(found), found
        else:
            result = reads.recent_tasks(
                client,
                status=status,
                task_type=task_type,
                offset=(page - 1) * PAGE_SIZE,
                count=PAGE_SIZE,
            )
            total, rows = result.total, result.tasks
        pages = max(1, math.ceil(total / PAGE_SIZE))
        base = {k: v for k, v in {"status": status, "task_type": task_type, "q": q}.items() if v}
        return render(
            request,
            "tasks.html",
            {
                "rows": rows,
                "total": total,
                "page": page,
                "pages": pages,
                "filters": base,
                "statuses": ["completed", "error", "cancelled"],
                "types": [t.value for t in TaskType],
                "page_link": lambda n: "?" + urlencode({**base, "page": n}),
            },
        )


def _add_task_page(router: APIRouter, state: ApiState, viewer: Any, writer: Any) -> None:
    """``/tasks/{task_id}`` and its cancel button."""
    client = state.client

    @router.get("/tasks/{task_id}", response_class=HTMLResponse)
    def task_page(request: Request, task_id: str, who: Principal = viewer) -> Response:
        record = reads.task_record(client, task_id)
        if record is None:
            raise Problem(
                404,
                f"no task {task_id!r}: it was never queued, or its result expired",
                title="Unknown task",
            )
        context = task_context(state, record, dict(request.query_params))
        message = None
        if not context["terminal"] or record.get("status") == "error":
            worker_ids = [w["worker_id"] for w in reads.workers(client)]
            message = reads.task_message(client, task_id, worker_ids)
        source = None
        if message and who.can_write:
            args = message.get("args")
            code = args.get("strategy_code") if isinstance(args, dict) else None
            source = code if isinstance(code, str) else None
        return render(
            request,
            "task.html",
            {
                "task_id": task_id,
                "source": source,
                "message_args": _visible_args(message),
                **context,
            },
        )

    @router.post("/tasks/{task_id}/cancel")
    def cancel(
        request: Request,
        task_id: str,
        csrf: Annotated[str, Form()] = "",
        _: Principal = writer,
    ) -> Response:
        check_csrf(request, csrf)
        cancel_task(client, task_id, result_ttl_s=state.settings.result_ttl_s)
        return RedirectResponse(f"/tasks/{quote(task_id)}", status_code=303)


def _add_submit(router: APIRouter, state: ApiState, writer: Any) -> None:
    """``/submit``: the form and what it posts."""
    client = state.client

    @router.get("/submit", response_class=HTMLResponse)
    def submit_form(request: Request, _: Principal = writer) -> Response:
        return render(request, "submit.html", {"form": _default_form(), "error": None})

    @router.post("/submit")
    async def submit(request: Request, _: Principal = writer) -> Response:
        form = {
            k: str(v) for k, v in (await request.form()).items() if k in (*SUBMIT_FIELDS, "csrf")
        }
        check_csrf(request, form.get("csrf"))
        try:
            message = _form_message(form)
            task_id = await state.blocking(
                lambda: submit_task(
                    client, message, queue=state.queue, result_ttl_s=state.settings.result_ttl_s
                )
            )
        except TaskValidationError as exc:
            return render(
                request,
                "submit.html",
                {"form": {**_default_form(), **form}, "error": str(exc)},
                status_code=422,
            )
        state.metrics.submitted.labels(message["task_type"]).inc()
        return RedirectResponse(f"/tasks/{quote(task_id)}", status_code=303)


def _add_dead_letters(router: APIRouter, state: ApiState, viewer: Any, writer: Any) -> None:
    """``/dead-letters``: the list, retry and purge."""
    client = state.client

    @router.get("/dead-letters", response_class=HTMLResponse)
    def dead_letters(request: Request, who: Principal = viewer) -> Response:
        entries = admin.dead_letters(client, 200)
        if not who.can_write:
            entries = [strip_source(e) for e in entries]
        return render(
            request,
            "dead_letters.html",
            {"entries": entries, "total": client.llen("strategyq:dead_letter")},
        )

    @router.post("/dead-letters/retry")
    def retry(
        request: Request,
        csrf: Annotated[str, Form()] = "",
        task_id: Annotated[str, Form()] = "",
        _: Principal = writer,
    ) -> Response:
        check_csrf(request, csrf)
        admin.retry_dead_letters(
            client, state.queue, task_id or None, result_ttl_s=state.settings.result_ttl_s
        )
        target = f"/tasks/{quote(task_id)}" if task_id else "/dead-letters"
        return RedirectResponse(target, status_code=303)

    @router.post("/dead-letters/purge")
    def purge(
        request: Request, csrf: Annotated[str, Form()] = "", _: Principal = writer
    ) -> Response:
        check_csrf(request, csrf)
        admin.purge_dead_letters(client)
        return RedirectResponse("/dead-letters", status_code=303)


def _add_login(router: APIRouter, state: ApiState) -> None:
    """``/login`` and ``/logout``: the token cookie."""

    @router.get("/login", response_class=HTMLResponse)
    def login_form(request: Request, next: str = "/") -> Response:
        return render(request, "login.html", {"next": _safe_next(next), "error": None})

    @router.post("/login")
    def login(
        request: Request,
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
    def logout(request: Request, csrf: Annotated[str, Form()] = "") -> Response:
        check_csrf(request, csrf)
        session_id = request.cookies.get(SESSION_COOKIE)
        if session_id:
            sessions.close_session(state.client, session_id)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(
            SESSION_COOKIE, httponly=True, samesite="strict", secure=request.url.scheme == "https"
        )
        return response


def _throughput_figure(buckets: list[dict[str, Any]]) -> dict[str, Any]:
    """The overview's Plotly figure: finished and failed tasks per time bucket."""
    return {
        "data": [
            {
                "type": "bar",
                "name": "finished",
                "x": [b["end_ms"] for b in buckets],
                "y": [b["finished"] for b in buckets],
                "marker": {"color": "#1f77b4"},
            },
            {
                "type": "bar",
                "name": "failed",
                "x": [b["end_ms"] for b in buckets],
                "y": [b["failed"] for b in buckets],
                "marker": {"color": "#d62728"},
            },
        ],
        "layout": {
            "height": 220,
            "barmode": "group",
            "margin": {"l": 40, "r": 10, "t": 10, "b": 30},
            "xaxis": {"type": "date"},
            "legend": {"orientation": "h"},
        },
    }


SECRET_WORDS = ("token", "secret", "password", "key", "auth", "session", "csrf")


def _secret_name(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in SECRET_WORDS)


def _safe_next(target: str) -> str:
    # Only same-site paths: an open redirect would let a link send users elsewhere.
    return target if target.startswith("/") and not target.startswith("//") else "/"


def _visible_args(message: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not message:
        return None
    args = message.get("args")
    if not isinstance(args, dict):
        return None
    args = dict(args)
    args.pop("strategy_code", None)
    return args


def _default_form() -> dict[str, str]:
    from strategyq.examples import source

    return {
        "task_type": "backtest",
        "task_id": "",
        "strategy_code": source("gap_up"),
        "symbols": "AAPL,MSFT,GOOG",
        "start_date": "2010-01-01",
        "end_date": "2012-12-31",
        **dict.fromkeys(FORM_TEXTS, ""),
        "limit": "10",
        "as_of": "",
        **dict.fromkeys(FORM_NUMBERS, ""),
        "lookback_sessions": "",
    }
