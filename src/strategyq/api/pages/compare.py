"""``/compare``: two to five finished backtests side by side (metrics, equity overlaid),
from Redis or, for runs it no longer holds, from the run archive."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query, Request
from fastapi.responses import HTMLResponse, Response

from strategyq.api import charts
from strategyq.api.deps import READ, Principal, State
from strategyq.api.pages.render import render, script_json
from strategyq.api.pages.tasks import record_of, unknown_task
from strategyq.api.problems import Problem
from strategyq.api.routes import RouteTable
from strategyq.api.shapes import clean_record
from strategyq.labels import HEADLINE, METRICS, format_metric, label

MIN_RUNS, MAX_RUNS = 2, 5

router = RouteTable(include_in_schema=False)


@router.get("/compare", response_class=HTMLResponse)
def compare(
    request: Request,
    state: State,
    task_id: Annotated[list[str] | None, Query(alias="id", max_length=200)] = None,
    _: Principal = READ,
) -> Response:
    ids = list(dict.fromkeys(t.strip() for t in task_id or [] if t.strip()))
    if not MIN_RUNS <= len(ids) <= MAX_RUNS:
        raise Problem(
            400,
            f"compare takes {MIN_RUNS} to {MAX_RUNS} backtests, got {len(ids)}: tick them "
            "on the tasks page, or pass ?id=A&id=B",
            title="Choose 2 to 5 backtests",
        )
    runs = []
    for tid in ids:
        # A run Redis no longer holds is compared from the run archive.
        record = record_of(state, tid)
        if record is None:
            raise Problem(404, unknown_task(state, tid))
        clean = clean_record(record)
        data = clean["data"]
        if clean.get("status") != "completed" or data.get("execution_mode") != "backtest":
            raise Problem(
                400,
                f"task {tid!r} is not a completed backtest ({clean.get('status')}, "
                f"{data.get('execution_mode') or 'no result'}): only completed backtests compare",
            )
        metrics = data.get("performance_metrics")
        args = data.get("task_args") if isinstance(data.get("task_args"), dict) else {}
        name = args.get("name") if isinstance(args.get("name"), str) else None
        runs.append(
            {
                "task_id": tid,
                "name": name,
                "data": data,
                "metrics": metrics if isinstance(metrics, dict) else {},
            }
        )
    names = list(HEADLINE) + [
        n for n in dict.fromkeys(k for r in runs for k in r["metrics"]) if n not in HEADLINE
    ]
    rows = [
        {
            "name": n,
            "label": label(n),
            "definition": METRICS[n].definition if n in METRICS else "",
            "values": [
                format_metric(n, r["metrics"][n]) if n in r["metrics"] else "—" for r in runs
            ],
        }
        for n in names
    ]
    return render(
        request,
        "compare.html",
        {
            "ids": ids,
            "runs": runs,
            "rows": rows,
            "equity": script_json(charts.equity_overlay([(r["task_id"], r["data"]) for r in runs])),
        },
    )
