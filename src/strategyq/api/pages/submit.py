"""``/submit``: the form that queues a backtest or a screen, and what it posts."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from strategyq.api.auth import check_csrf
from strategyq.api.deps import WRITE, Principal, State
from strategyq.api.pages.render import render
from strategyq.api.pages.tasks import form_kind, stored_args
from strategyq.api.problems import Problem
from strategyq.api.routes import RouteTable
from strategyq.client import submit_task
from strategyq.errors import TaskValidationError
from strategyq.protocol.envelope import TaskType

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

router = RouteTable(include_in_schema=False)


@router.get("/submit", response_class=HTMLResponse)
def submit_form(
    request: Request,
    state: State,
    from_task: Annotated[str | None, Query(alias="from", max_length=200)] = None,
    _: Principal = WRITE,
) -> Response:
    """The form; ``?from=ID`` fills it with that task's args and source to edit."""
    if not from_task:
        return render(request, "submit.html", {"form": _default_form(), "error": None})
    record = state.view.task(from_task)
    args = stored_args(record) if record is not None else None
    if args is None:
        message = state.view.message(from_task)
        held = message.get("args") if message else None
        args = dict(held) if isinstance(held, dict) else None
    kind = form_kind(args) if args is not None else None
    if args is None or kind is None:
        raise Problem(
            404,
            f"task {from_task!r} has no args this form can take: it expired, its record "
            "predates stored args, or it is a sweep (resubmit it with the API or CLI)",
            title="Nothing to resubmit",
        )
    form, left_out = _form_from_args(kind, args)
    return render(
        request,
        "submit.html",
        {"form": form, "error": None, "from_task": from_task, "left_out": left_out},
    )


def _form_from_args(kind: str, args: Mapping[str, Any]) -> tuple[dict[str, str], list[str]]:
    """The form's fields from a task's args, and the args it has no field for."""
    form = {**_default_form(), "task_type": kind, "strategy_code": ""}
    symbols = args.get("universe" if kind == TaskType.SCREENING else "symbols")
    form["symbols"] = ",".join(symbols) if isinstance(symbols, list) else str(symbols or "")
    left_out = []
    for name, value in args.items():
        if name in ("symbols", "universe"):
            continue
        if name not in SUBMIT_FIELDS:
            left_out.append(name)
        elif name == "hold_days" and value is None:
            form[name] = "none"
        elif value is not None:
            form[name] = str(value)
    return form, sorted(left_out)


@router.post("/submit")
async def submit(request: Request, state: State, _: Principal = WRITE) -> Response:
    form = {k: str(v) for k, v in (await request.form()).items() if k in (*SUBMIT_FIELDS, "csrf")}
    check_csrf(request, form.get("csrf"))
    try:
        message = _form_message(form)
        task_id = await state.blocking(
            lambda: submit_task(
                state.client, message, queue=state.queue, result_ttl_s=state.settings.result_ttl_s
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


def _form_message(form: Mapping[str, str]) -> dict[str, Any]:
    """A wire task from the submit form's fields (validated later by ``submit_task``)."""
    task_type = form.get("task_type", "backtest")
    # Browsers post a textarea's line breaks as CRLF: the source is kept as typed.
    code = form.get("strategy_code", "").replace("\r\n", "\n")
    args: dict[str, Any] = {"strategy_code": code}
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
