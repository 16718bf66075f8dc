"""``/tasks``: queued, running and finished tasks, searched; ``/tasks/{id}`` and its cancel.

Runs older than Redis keeps are read from the run archive when there is one: ``/tasks``
lists them below the finished tasks Redis holds, and ``/tasks/{id}`` (its tables and
combinations too) opens an archived run when Redis no longer holds its record.
"""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Mapping
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote, urlencode

import orjson
from fastapi import Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from strategyq.api import charts, sweep_page
from strategyq.api.auth import check_csrf
from strategyq.api.deps import READ, WRITE, Principal, State
from strategyq.api.pages.render import backtest_context, render, screen_rows, task_context
from strategyq.api.problems import Problem
from strategyq.api.routes import RouteTable
from strategyq.api.shapes import clean_data, clean_record
from strategyq.api.state import ApiState
from strategyq.client import cancel_task, submit_task
from strategyq.errors import ArchiveError, ArchiveUnavailable, TaskIdInUse, TaskValidationError
from strategyq.labels import METRICS, format_metric, label
from strategyq.protocol.results import TERMINAL_STATUSES
from strategyq.protocol.task import PRODUCER_TASK_TYPES
from strategyq.queue.view import BOARD_STATUSES, SHOWN_SYMBOLS, Board, BoardFilter, BoardRow

if TYPE_CHECKING:
    from strategyq.archive.store import Page

PAGE_SIZE = 50

router = RouteTable(include_in_schema=False)


@router.get("/tasks", response_class=HTMLResponse)
def tasks(
    request: Request,
    state: State,
    status: Annotated[str | None, Query()] = None,
    task_type: Annotated[str | None, Query()] = None,
    q: Annotated[str | None, Query(max_length=200)] = None,
    symbol: Annotated[str | None, Query(max_length=40)] = None,
    since: Annotated[str | None, Query(max_length=40)] = None,
    until: Annotated[str | None, Query(max_length=40)] = None,
    name: Annotated[str | None, Query(max_length=200)] = None,
    tag: Annotated[str | None, Query(max_length=100)] = None,
    fingerprint: Annotated[str | None, Query(max_length=64)] = None,
    metric: Annotated[str | None, Query(max_length=200)] = None,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    older: Annotated[str | None, Query(max_length=300)] = None,
    _: Principal = READ,
) -> Response:
    """Queued, running and finished tasks in one view, searched and filtered; below them,
    the archived runs older than Redis keeps.

    ``fingerprint`` and ``metric`` (``sharpe_ratio>1``; several joined by commas) are
    the archive's own filters: with either, only the archive is searched, recent runs
    included.
    """
    view = state.view
    if status and status not in BOARD_STATUSES:
        raise Problem(400, f"unknown status {status!r}: choose one of {', '.join(BOARD_STATUSES)}")
    needle = (q or "").strip() or None
    alone = not (status or task_type or symbol or since or until or name or tag)
    alone = alone and not (fingerprint or metric)
    if needle and alone and (view.task(needle) is not None or _archived_id(state, needle)):
        return RedirectResponse(f"/tasks/{quote(needle)}", status_code=303)
    where = BoardFilter(
        status=status or None,
        task_type=task_type or None,
        text=needle,
        symbol=(symbol or "").strip() or None,
        since_ms=_moment_ms("since", since),
        until_ms=_moment_ms("until", until, end_of_day=True),
        name=(name or "").strip() or None,
        tag=(tag or "").strip() or None,
    )
    archive_only = bool((fingerprint or "").strip() or (metric or "").strip())
    if archive_only:
        board = Board(0, [], [], 0, [], 0)
    else:
        board = view.board(where, offset=(page - 1) * PAGE_SIZE, count=PAGE_SIZE)
    pages = max(1, math.ceil(board.finished_total / PAGE_SIZE))
    filters = {
        "status": status,
        "task_type": task_type,
        "q": q,
        "symbol": symbol,
        "since": since,
        "until": until,
        "name": name,
        "tag": tag,
        "fingerprint": fingerprint,
        "metric": metric,
    }
    base = {k: v for k, v in filters.items() if v}
    archived = _archived(
        state,
        where,
        since=since,
        until=until,
        fingerprint=(fingerprint or "").strip() or None,
        metric=metric,
        older=older,
        archive_only=archive_only,
    )
    return render(
        request,
        "tasks.html",
        {
            "board": board,
            "queued": [board_row(r) for r in board.queued],
            "running": [board_row(r) for r in board.running],
            "rows": [board_row(r) for r in board.finished],
            "total": board.finished_total,
            "page": page,
            "pages": pages,
            "filters": base,
            "statuses": list(BOARD_STATUSES),
            # sweep_chunk is the worker's own internal work: not a type people filter by.
            "types": [t.value for t in PRODUCER_TASK_TYPES],
            "page_link": lambda n: "?" + urlencode({**base, "page": n}),
            "archive_only": archive_only,
            "archived": archived,
            "older_link": (
                "?" + urlencode({**base, "older": archived["next"]}) + "#archived"
                if archived and archived["next"]
                else None
            ),
        },
    )


def _archived_id(state: ApiState, task_id: str) -> bool:
    """Whether the archive holds a run with this id (False without an archive or when it
    cannot be read now: the id search then goes on as a search)."""
    if not state.archive.configured:
        return False
    try:
        return bool(state.archive.get().existing([task_id]))
    except (Problem, ArchiveError):
        return False


def _archived(
    state: ApiState,
    where: BoardFilter,
    *,
    since: str | None,
    until: str | None,
    fingerprint: str | None,
    metric: str | None,
    older: str | None,
    archive_only: bool,
) -> dict[str, Any] | None:
    """The page of archived runs the filters match and Redis no longer lists: those that
    ended before the oldest finished task Redis still lists (with ``archive_only``, every
    archived run). None when there is no archive or the filters ask only for queued or
    running tasks; ``problem`` says why the archive could not be read now."""
    if not state.archive.configured or where.status in ("queued", "running"):
        return None
    # Here rather than with the module, as ArchiveHandle.get: a server without an archive
    # never loads its modules.
    from strategyq.archive.store import RunFilter

    metrics = [m.strip() for m in (metric or "").split(",") if m.strip()]
    try:
        flt = RunFilter.build(
            name=where.name,
            tag=where.tag,
            fingerprint=fingerprint,
            symbol=where.symbol,
            since=(since or "").strip() or None,
            until=(until or "").strip() or None,
            status=where.status,
            task_type=where.task_type,
            metric=metrics,
            limit=PAGE_SIZE,
            before=older or None,
            text=where.text,
            older_than_ms=None if archive_only else _redis_horizon_ms(state),
        )
    except ArchiveError as exc:
        raise Problem(400, str(exc)) from None
    try:
        found: Page = state.archive.get().search(flt)
    except Problem as exc:
        return {"rows": [], "next": None, "problem": exc.detail}
    except ArchiveUnavailable as exc:
        return {"rows": [], "next": None, "problem": str(exc)}
    return {"rows": [archived_row(r) for r in found.runs], "next": found.next, "problem": None}


def _redis_horizon_ms(state: ApiState) -> int:
    """Runs that ended before this (epoch ms) are no longer listed by Redis: the oldest
    member of the recent-task index (older ones were trimmed at its cap), or the result
    TTL ago, whichever is later; now, when Redis lists no finished run."""
    now = int(time.time() * 1000)
    oldest = state.view.oldest_finished_ms()
    return max(now if oldest is None else oldest, now - state.settings.result_ttl_s * 1000)


def archived_row(run: Mapping[str, Any]) -> dict[str, Any]:
    """An archived run (a ``/v1/runs`` entry) as the tasks page lists it."""
    metrics = run.get("metrics") or {}
    headline = ""
    for metric in ("total_return", "sharpe_ratio"):
        if run.get("status") == "completed" and metrics.get(metric) is not None:
            headline = f"{label(metric)} {format_metric(metric, metrics[metric])}"
            break
    symbols = list(run.get("symbols") or [])
    more = len(symbols) - SHOWN_SYMBOLS
    return {
        **run,
        "finished": _when(run.get("finished_at")),
        "symbol_count": len(symbols),
        "symbols_text": ", ".join(symbols[:SHOWN_SYMBOLS]) + (f" +{more}" if more > 0 else ""),
        "headline_text": headline,
    }


def _moment_ms(name: str, value: str | None, *, end_of_day: bool = False) -> int | None:
    """``2024-01-15`` or ``2024-01-15T10:30`` (UTC unless it names a zone) as epoch ms;
    a bare date as ``until`` means the end of that day."""
    value = (value or "").strip()
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise Problem(
            400,
            f"{name}={value!r} is not a date or time: write it like 2024-01-15 or "
            "2024-01-15T10:30 (UTC)",
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if end_of_day and len(value) == 10:
        moment += timedelta(days=1) - timedelta(milliseconds=1)
    return int(moment.timestamp() * 1000)


def _when(iso: str | None) -> str | None:
    """An ISO time as the pages write times (``2024-01-15 10:30:00Z``)."""
    if iso is None:
        return None
    try:
        moment = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return iso
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


def board_row(row: BoardRow) -> dict[str, Any]:
    """A board row with its figures written for people."""
    headline = ""
    if row.headline is not None:
        name, value = row.headline
        headline = (
            f"{label(name)} {format_metric(name, value)}"
            if name in METRICS
            else (f"{name} {value}")
        )
    more = (row.symbol_count or 0) - len(row.symbols)
    symbols = ", ".join(row.symbols) + (f" +{more}" if more > 0 and row.symbols else "")
    return {
        **asdict(row),
        "submitted_at": _when(row.submitted_at),
        "started_at": _when(row.started_at),
        "symbols_text": symbols,
        "headline_text": headline,
        "duration_ms": None if row.duration_s is None else row.duration_s * 1000,
        "wait_ms": None if row.wait_s is None else row.wait_s * 1000,
    }


@router.get("/tasks/{task_id}/combinations/{index}", response_class=HTMLResponse)
def combination_page(
    request: Request, task_id: str, index: int, state: State, who: Principal = READ
) -> Response:
    """One combination of a sweep: its parameters, rank and metrics, and its full backtest.

    The best combination's backtest is kept with the sweep and shown at once. Any other's
    is a backtest of its own (the sweep's args with the combination's params, under
    :func:`~strategyq.api.sweep_page.combination_task_id`): queued from this page by
    the write scope, followed live while it runs, and shown here once it has finished.
    """
    data, row = _combination(state, task_id, index)
    best = sweep_page.mapping(data.get("best"))
    metrics = sweep_page.mapping(row.get("metrics"))
    is_best = best.get("index") == index
    kept = clean_data(data.get("best_result")) if is_best else {}
    derived_id = sweep_page.combination_task_id(task_id, index)
    derived = None if kept.get("equity_curve") else state.view.task(derived_id)
    context: dict[str, Any] = {"full": None, "derived": None}
    if kept.get("equity_curve"):
        context["full"] = backtest_context(state.market_dir, kept, dict(request.query_params))
    elif derived is not None:
        record = clean_record(derived)
        status = record.get("status")
        context["derived"] = {
            "task_id": derived_id,
            "status": status,
            "terminal": status in TERMINAL_STATUSES,
            "stage": record["data"].get("stage"),
            "error": record["data"].get("error"),
            "error_type": record["data"].get("error_type"),
        }
        if status == "completed" and record["data"].get("execution_mode") == "backtest":
            context["full"] = backtest_context(
                state.market_dir, record["data"], dict(request.query_params)
            )
    args = stored_args({"data": data})
    return render(
        request,
        "combination.html",
        {
            "task_id": task_id,
            "index": index,
            "row": row,
            "is_best": is_best,
            "derived_id": derived_id,
            "can_run": who.can_write and args is not None,
            "has_args": args is not None,
            "headline": sweep_page.headline(metrics),
            "all_metrics": [
                (label(n), format_metric(n, v), METRICS[n].definition if n in METRICS else "")
                for n, v in metrics.items()
            ],
            **context,
        },
    )


def _combination(state: Any, task_id: str, index: int) -> tuple[dict[str, Any], Mapping[str, Any]]:
    record = record_of(state, task_id)
    data = clean_record(record)["data"] if record is not None else {}
    row = sweep_page.combination(data, index) if data.get("execution_mode") == "sweep" else None
    if row is None:
        raise Problem(
            404,
            f"sweep {task_id!r} has no combination {index} in its stored results "
            "(unknown sweep, expired, or cut by STRATEGYQ_SWEEP_MAX_RESULTS)",
            title="Unknown combination",
        )
    return data, row


@router.post("/tasks/{task_id}/combinations/{index}/backtest")
async def run_combination(
    request: Request,
    task_id: str,
    index: int,
    state: State,
    csrf: Annotated[str, Form()] = "",
    _: Principal = WRITE,
) -> Response:
    """Queue the full backtest of one combination (once: a second click opens the first)."""
    check_csrf(request, csrf)
    data, row = await state.blocking(_combination, state, task_id, index)
    args = stored_args({"data": data})
    if args is None:
        raise Problem(
            409,
            f"sweep {task_id!r} did not keep its args, so its combinations cannot be run again: "
            "submit a backtest with these params instead",
        )
    message = sweep_page.combination_message(
        task_id, index, args, sweep_page.mapping(row.get("params"))
    )
    page = f"/tasks/{quote(task_id, safe='')}/combinations/{index}"
    try:
        await state.blocking(
            lambda: submit_task(
                state.client, message, queue=state.queue, result_ttl_s=state.settings.result_ttl_s
            )
        )
    except TaskIdInUse:
        pass  # already queued, running or finished: the page shows that one
    except TaskValidationError as exc:
        raise Problem(422, f"the combination's backtest was not queued: {exc}") from None
    else:
        state.metrics.submitted.labels("backtest").inc()
    return RedirectResponse(page, status_code=303)


@router.post("/tasks/{task_id:path}/cancel")
def cancel(
    request: Request,
    task_id: str,
    state: State,
    csrf: Annotated[str, Form()] = "",
    _: Principal = WRITE,
) -> Response:
    check_csrf(request, csrf)
    cancel_task(state.client, task_id, result_ttl_s=state.settings.result_ttl_s)
    return RedirectResponse(f"/tasks/{quote(task_id)}", status_code=303)


CSV_TABLES = {"trades": "trades", "instances": "instances", "ranked": "ranked_results"}


@router.get("/tasks/{task_id:path}/{table}.csv")
def table_csv(task_id: str, table: str, state: State, _: Principal = READ) -> Response:
    """Every row of a result's trades, instances or ranked table, as CSV."""
    if table not in CSV_TABLES:
        raise Problem(404, f"no table {table!r}: choose trades, instances or ranked")
    record = record_of(state, task_id)
    if record is None:
        raise Problem(404, unknown_task(state, task_id))
    data = clean_record(record)["data"]
    rows = screen_rows(data) if table == "ranked" else data.get(CSV_TABLES[table]) or []
    columns = list(dict.fromkeys(k for row in rows for k in row))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _csv_cell(v) for k, v in row.items()})
    name = "".join(c if c.isalnum() or c in "-_." else "_" for c in task_id)[:80]
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}-{table}.csv"'},
    )


def _csv_cell(value: Any) -> Any:
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    # A spreadsheet runs a cell that starts with = + - @ as a formula: quote it as text.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return value


@router.get("/tasks/{task_id:path}/prices.json")
def price_json(
    task_id: str,
    state: State,
    ticker: Annotated[str, Query(max_length=40)],
    _: Principal = READ,
) -> Response:
    """One traded ticker's price chart (closes, entries, exits) as a Plotly figure; of a
    sweep, its best combination's backtest's (the one it keeps)."""
    record = state.view.task(task_id)
    if record is None:
        raise Problem(404, f"no task {task_id!r}: it was never queued, or its result expired")
    data = clean_record(record)["data"]
    if data.get("execution_mode") == "sweep":
        data = clean_data(data.get("best_result"))
    traded = charts.traded_tickers(data)
    if ticker not in traded:
        shown = ", ".join(list(traded)[:10]) or "none"
        raise Problem(
            404,
            f"{task_id!r} has no trade in {ticker!r}: pick a traded ticker ({shown}"
            f"{', …' if len(traded) > 10 else ''})",
        )
    trade_model = (data.get("summary") or {}).get("trade_model") or {}
    adjusted = bool(trade_model.get("adjusted", True)) if isinstance(trade_model, dict) else True
    figure = charts.price_figures(data, state.market_dir, adjusted=adjusted, tickers=[ticker])
    return Response(orjson.dumps(figure[ticker]), media_type="application/json")


# Registered last: an id may hold "/", so this route takes the rest of the path
# and must be tried after the more specific ones above.
@router.get("/tasks/{task_id:path}", response_class=HTMLResponse)
def task_page(request: Request, task_id: str, state: State, who: Principal = READ) -> Response:
    finished = state.view.finished_ms(task_id)
    entry = state.records.get(task_id, finished)
    record = entry.record if entry is not None else state.view.task(task_id)
    archived = None
    if record is None:
        # Gone from Redis (its TTL passed, or it was evicted): the archive may keep it.
        record = state.archive.record(task_id)
        if record is None:
            raise Problem(404, unknown_task(state, task_id), title="Unknown task")
        archived = state.archive.run(task_id) or {}
    if entry is None and finished is not None and record.get("status") in TERMINAL_STATUSES:
        entry = state.records.put(task_id, finished, record)
    link = f"/tasks/{quote(task_id, safe='')}/combinations"
    memo = entry.derived if entry is not None else None
    context = task_context(state, record, dict(request.query_params), link, memo)
    stored = stored_args(record)
    if stored is None and archived is not None and isinstance(archived.get("args"), dict):
        stored = dict(archived["args"])
    message = None
    held = not context["terminal"] or record.get("status") == "error"
    if stored is None and archived is None and held:
        message = state.view.message(task_id)
    args = stored if stored is not None else _message_args(message)
    code = args.get("strategy_code") if args is not None else None
    source = code if isinstance(code, str) and who.can_write else None
    visible = None if args is None else {k: v for k, v in args.items() if k != "strategy_code"}
    return render(
        request,
        "task.html",
        {
            "task_id": task_id,
            "source": source,
            "message_args": visible,
            "resubmit": who.can_write and args is not None and form_kind(args) is not None,
            "archived": archived is not None,
            "run_name": _text(args.get("name")) if args else None,
            "run_tags": _tags(args.get("tags")) if args else [],
            "waits": waits(context["data"]),
            **context,
        },
    )


def record_of(state: ApiState, task_id: str) -> dict[str, Any] | None:
    """A task's result record: from Redis while it holds it, else from the run archive."""
    record = state.view.task(task_id)
    return record if record is not None else state.archive.record(task_id)


def unknown_task(state: ApiState, task_id: str) -> str:
    where = " nor in the run archive" if state.archive.configured else ""
    return f"no task {task_id!r} in Redis{where}: it was never queued, or its result expired" + (
        "" if where else " (run 'strategyq archive' to keep every run past Redis' TTL)"
    )


def waits(data: Mapping[str, Any]) -> list[tuple[str, float]]:
    """How long the task waited in the queue and ran (ms), as far as its record says."""
    submitted, started = data.get("submitted_at") or data.get("queued_at"), data.get("started_at")
    out: list[tuple[str, float]] = []
    wait = _seconds(submitted, started)
    if wait is not None:
        out.append(("waited in the queue", wait * 1000))
    ran = data.get("execution_time_ms")
    if isinstance(ran, int | float) and not isinstance(ran, bool):
        out.append(("ran", float(ran)))
    return out


def _seconds(start: Any, end: Any) -> float | None:
    if not isinstance(start, str) or not isinstance(end, str):
        return None
    try:
        a = datetime.fromisoformat(start.replace("Z", "+00:00"))
        b = datetime.fromisoformat(end.replace("Z", "+00:00"))
        return max((b - a).total_seconds(), 0.0)
    except (ValueError, TypeError):
        return None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _tags(value: Any) -> list[str]:
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list):
        return []
    return sorted({t.strip() for t in value if isinstance(t, str) and t.strip()})


def stored_args(record: Mapping[str, Any]) -> dict[str, Any] | None:
    """The producer's args a finished run's record keeps (``data.task_args``)."""
    data = record.get("data")
    args = data.get("task_args") if isinstance(data, dict) else None
    return dict(args) if isinstance(args, dict) else None


def form_kind(args: Mapping[str, Any]) -> str | None:
    """Which submit form the args fill: a screen's name a universe, a backtest's
    symbols; a sweep's (with a grid) has no form."""
    if "param_grid" in args:
        return None
    if "universe" in args:
        return "screening"
    return "backtest" if "symbols" in args else None


def _message_args(message: Mapping[str, Any] | None) -> dict[str, Any] | None:
    args = message.get("args") if message else None
    return dict(args) if isinstance(args, dict) else None
