"""``strategyq submit|result|wait|cancel``: produce tasks and read their results."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

import redis
import typer
from rich.table import Table

from strategyq.cli.common import client, console, err_console, fail
from strategyq.client import (
    add_backtest_task,
    add_screening_task,
    cancel_task,
    get_task_result,
)
from strategyq.protocol import TERMINAL_STATUSES

submit_app = typer.Typer(help="Queue a backtest or a screening task.", no_args_is_help=True)

StrategyFile = Annotated[Path, typer.Argument(help="Python file defining the strategy function.")]
Wait = Annotated[bool, typer.Option("--wait", help="Wait for the result and show it.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the raw result JSON.")]
Timeout = Annotated[float, typer.Option("--timeout", help="Seconds to wait with --wait.")]


def _read_code(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise fail(f"cannot read {path}: {exc.strerror}") from None


def _split(value: str) -> list[str]:
    return [s.strip() for s in value.split(",") if s.strip()]


@submit_app.command("backtest")
def submit_backtest(
    strategy: StrategyFile,
    symbols: Annotated[str, typer.Option(help="Comma-separated tickers, e.g. AAPL,MSFT.")],
    start: Annotated[str, typer.Option(help="First date, ISO 8601 (2010-01-01).")],
    end: Annotated[str, typer.Option(help="Last date, ISO 8601 (2012-12-31).")],
    hold_days: Annotated[int | None, typer.Option(help="Sessions each trade is held.")] = None,
    entry: Annotated[str | None, typer.Option(help="next_open (default) or close.")] = None,
    stop_loss_pct: Annotated[float | None, typer.Option(help="Stop loss, percent.")] = None,
    take_profit_pct: Annotated[float | None, typer.Option(help="Take profit, percent.")] = None,
    commission_bps: Annotated[float | None, typer.Option(help="Commission per side, bps.")] = None,
    slippage_bps: Annotated[float | None, typer.Option(help="Slippage per side, bps.")] = None,
    task_id: Annotated[str | None, typer.Option(help="Task id (default: a new UUID).")] = None,
    wait: Wait = False,
    as_json: AsJson = False,
    timeout: Timeout = 300.0,
) -> None:
    """Queue a backtest of STRATEGY over the symbols and dates."""
    options: dict[str, Any] = {
        k: v
        for k, v in {
            "hold_days": hold_days,
            "entry": entry,
            "stop_loss_pct": stop_loss_pct,
            "take_profit_pct": take_profit_pct,
            "commission_bps": commission_bps,
            "slippage_bps": slippage_bps,
        }.items()
        if v is not None
    }
    r = client()
    tid = add_backtest_task(
        r,
        task_id or str(uuid.uuid4()),
        _read_code(strategy),
        _split(symbols),
        start,
        end,
        **options,
    )
    _after_submit(r, tid, wait, as_json, timeout)


@submit_app.command("screening")
def submit_screening(
    strategy: StrategyFile,
    universe: Annotated[str, typer.Option(help="Comma-separated tickers to screen.")],
    limit: Annotated[int, typer.Option(help="Results to return.")] = 10,
    as_of: Annotated[str | None, typer.Option(help="Screen date (default: latest).")] = None,
    task_id: Annotated[str | None, typer.Option(help="Task id (default: a new UUID).")] = None,
    wait: Wait = False,
    as_json: AsJson = False,
    timeout: Timeout = 300.0,
) -> None:
    """Queue a screen of the universe with STRATEGY."""
    options: dict[str, Any] = {"as_of": as_of} if as_of else {}
    r = client()
    tid = add_screening_task(
        r, task_id or str(uuid.uuid4()), _read_code(strategy), _split(universe), limit, **options
    )
    _after_submit(r, tid, wait, as_json, timeout)


def _after_submit(r: redis.Redis, task_id: str, wait: bool, as_json: bool, timeout: float) -> None:
    if not wait:
        if as_json:
            print(json.dumps({"task_id": task_id, "status": "queued"}))
        else:
            console.print(f"queued [bold]{task_id}[/]")
        return
    result = wait_with_status(r, task_id, timeout, quiet=as_json)
    show_result(task_id, result, as_json)


def wait_with_status(
    r: redis.Redis, task_id: str, timeout: float, *, quiet: bool = False
) -> dict[str, Any] | None:
    """Wait for a terminal result, showing a live status line (status and stage)."""
    from strategyq.client import wait_for_result

    deadline = time.monotonic() + timeout
    if quiet:
        return wait_for_result(r, task_id, timeout)
    with console.status(f"{task_id}: waiting") as status:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return get_task_result(r, task_id)
            # Short blocking waits so the status line can show the stage.
            result = wait_for_result(r, task_id, min(0.5, remaining))
            if result is not None:
                return result
            current = get_task_result(r, task_id) or {}
            data = current.get("data") or {}
            stage = data.get("stage", "")
            status.update(f"{task_id}: {current.get('status', 'unknown')} {stage}".strip())


def show_result(task_id: str, result: dict[str, Any] | None, as_json: bool) -> None:
    """Print a result as tables (or JSON); exit 1 for errors and unknown tasks."""
    if result is None:
        raise fail(f"no result for task {task_id} (unknown id, or expired)")
    if as_json:
        print(json.dumps(result, indent=2))
    else:
        render(task_id, result)
    if result.get("status") == "error":
        raise typer.Exit(1)


def render(task_id: str, result: dict[str, Any]) -> None:
    status = result.get("status")
    data = result.get("data") or {}
    console.print(f"[bold]{task_id}[/]: {status}  (updated {result.get('updated_at')})")
    if status == "error":
        console.print(f"[red]{data.get('error_type', 'error')}:[/] {data.get('error')}")
        return
    if status not in TERMINAL_STATUSES or status == "cancelled":
        console.print({k: v for k, v in data.items()})
        return
    mode = data.get("execution_mode")
    if mode == "backtest":
        _render_backtest(data)
    elif mode == "screening":
        _render_screening(data)
    console.print(f"worker {data.get('worker_id')}, {data.get('execution_time_ms', 0):.1f} ms")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "—" if value is None else str(value)


def _render_backtest(data: dict[str, Any]) -> None:
    summary = data.get("summary", {})
    console.print(
        f"{summary.get('total_instances')} instances ({summary.get('positive_signals')} signals) "
        f"over {summary.get('symbols_processed')} symbols, {summary.get('date_range')}"
    )
    metrics = Table(title="performance metrics")
    metrics.add_column("metric")
    metrics.add_column("value", justify="right")
    for key, value in (data.get("performance_metrics") or {}).items():
        metrics.add_row(key, _fmt(value))
    console.print(metrics)
    instances = data.get("instances") or []
    if instances:
        table = Table(title=f"first {min(10, len(instances))} instances")
        columns = list(dict.fromkeys(k for inst in instances[:10] for k in inst))[:7]
        for c in columns:
            table.add_column(c)
        for inst in instances[:10]:
            table.add_row(*(_fmt(inst.get(c)) for c in columns))
        console.print(table)
    for warning in data.get("warnings") or []:
        console.print(f"[yellow]warning:[/] {warning}")


def _render_screening(data: dict[str, Any]) -> None:
    console.print(
        f"as of {data.get('as_of')}: {data.get('results_returned')} of "
        f"{data.get('universe_size')} symbols"
    )
    table = Table(title="ranked results")
    for c in ("ticker", "score", "signal", "message"):
        table.add_column(c)
    for row in data.get("ranked_results") or []:
        table.add_row(*(_fmt(row.get(c)) for c in ("ticker", "score", "signal", "message")))
    console.print(table)
    for warning in data.get("warnings") or []:
        console.print(f"[yellow]warning:[/] {warning}")


def register(app: typer.Typer) -> None:
    @app.command("result")
    def result_cmd(
        task_id: str,
        as_json: AsJson = False,
        html: Annotated[
            Path | None,
            typer.Option(
                "--html", help="Also write a self-contained HTML report (charts inlined)."
            ),
        ] = None,
    ) -> None:
        """Show a task's result (whatever its status)."""
        result = get_task_result(client(), task_id)
        if html is not None and result is not None:
            from strategyq.api.report import write_report
            from strategyq.cli.common import settings

            size = write_report(html, task_id, result, settings().data_dir)
            err_console.print(f"wrote {html} ({size / 1e6:.1f} MB, opens offline)")
        show_result(task_id, result, as_json)

    @app.command("wait")
    def wait_cmd(task_id: str, timeout: Timeout = 300.0, as_json: AsJson = False) -> None:
        """Wait for a task to finish and show its result."""
        r = client()
        result = wait_with_status(r, task_id, timeout, quiet=as_json)
        if result is None or result.get("status") not in TERMINAL_STATUSES:
            show_result(task_id, result, as_json)
            raise fail(f"task {task_id} did not finish within {timeout:.0f}s", 2)
        show_result(task_id, result, as_json)

    @app.command("cancel")
    def cancel_cmd(task_id: str) -> None:
        """Cancel a queued or running task."""
        previous = cancel_task(client(), task_id)
        if previous in TERMINAL_STATUSES:
            console.print(f"{task_id} had already finished ({previous}); nothing to cancel")
        elif previous == "queued":
            console.print(f"{task_id} cancelled before it started")
        elif previous == "running":
            console.print(f"{task_id}: cancel requested; its worker stops it now")
        else:
            console.print(f"{task_id}: no record yet; it will be skipped if it arrives")
