"""``strategyq submit|result|wait|cancel``: produce tasks and read their results."""

from __future__ import annotations

import inspect
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import redis
import typer
from rich.table import Table

from strategyq.cli.common import client, console, err_console, fail, settings
from strategyq.cli.sweep_view import render_sweep
from strategyq.cli.waiting import wait_with_status
from strategyq.client import add_sweep_task, cancel_task, submit_task
from strategyq.labels import HEADLINE, METRICS, date_range, duration, format_metric, label
from strategyq.protocol import TERMINAL_STATUSES, TaskType
from strategyq.queue.view import QueueView
from strategyq.task_args import TaskArg, args_for

submit_app = typer.Typer(
    help="Queue a backtest, a screening task or a parameter sweep.", no_args_is_help=True
)

StrategyFile = Annotated[Path, typer.Argument(help="Python file defining the strategy function.")]
Wait = Annotated[bool, typer.Option("--wait", help="Wait for the result and show it.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the raw result JSON.")]
Timeout = Annotated[float, typer.Option("--timeout", help="Seconds to wait with --wait.")]


def read_code(path: Path) -> str:
    """The strategy file's text (one red line when it cannot be read)."""
    try:
        return path.read_text()
    except OSError as exc:
        raise fail(f"cannot read {path}: {exc.strerror}") from None


def _grid_value(text: str) -> Any:
    lowered = text.lower()
    if lowered in {"true", "false"}:
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_grid(options: list[str]) -> dict[str, list[Any]]:
    """``["fast=5,10,20", "slow=50,100"]`` as a param_grid (numbers where they parse)."""
    grid: dict[str, list[Any]] = {}
    for option in options:
        name, sep, values = option.partition("=")
        if not sep or not name.strip() or not values.strip():
            raise fail(f"--grid {option!r} must look like NAME=V1,V2,… (e.g. fast=5,10,20)")
        grid[name.strip()] = [_grid_value(v.strip()) for v in values.split(",") if v.strip()]
    return grid


def _hold_days(value: str) -> int | None:
    """``--hold-days``: a whole number, or none/null for no limit (the wire's null)."""
    text = value.strip().lower()
    if text in ("none", "null"):
        return None
    try:
        return int(text)
    except ValueError:
        raise fail(
            f"--hold-days {value!r} is not a whole number; use e.g. 5, or 'none' for no limit"
        ) from None


def _split(value: str) -> list[str]:
    return [s.strip() for s in value.split(",") if s.strip()]


def _option(arg: TaskArg) -> inspect.Parameter:
    """A keyword-only typer option for one task arg (required args have no default)."""
    kind = str if arg.kind is list else arg.kind
    flags = f"{arg.option}/--no-{arg.option[2:]}" if kind is bool else arg.option
    option = typer.Option(flags, help=arg.help, show_default=False)
    if arg.required:
        return inspect.Parameter(
            arg.name, inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[kind, option]
        )
    return inspect.Parameter(
        arg.name,
        inspect.Parameter.KEYWORD_ONLY,
        annotation=Annotated[kind | None, option],  # type: ignore[valid-type]
        default=None,
    )


_COMMON = [
    inspect.Parameter("strategy", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=StrategyFile),
    inspect.Parameter(
        "task_id",
        inspect.Parameter.KEYWORD_ONLY,
        annotation=Annotated[
            str | None, typer.Option(help="Task id (default: a new UUID).", show_default=False)
        ],
        default=None,
    ),
    inspect.Parameter("wait", inspect.Parameter.KEYWORD_ONLY, annotation=Wait, default=False),
    inspect.Parameter("as_json", inspect.Parameter.KEYWORD_ONLY, annotation=AsJson, default=False),
    inspect.Parameter("timeout", inspect.Parameter.KEYWORD_ONLY, annotation=Timeout, default=300.0),
]


def _submit_command(task_type: TaskType, summary: str) -> Callable[..., None]:
    """``strategyq submit <task_type>``, with one option per arg of the task-args table."""
    table = [a for a in args_for(task_type) if a.name != "strategy_code"]

    def command(**given: Any) -> None:
        args: dict[str, Any] = {"strategy_code": read_code(given.pop("strategy"))}
        for arg in table:
            value = given.pop(arg.name)
            if value is None:
                continue
            if arg.from_cli is not None:
                args[arg.name] = arg.from_cli(value)
            else:
                args[arg.name] = _split(value) if arg.kind is list else value
        r = client()
        _warn_without_workers(r)
        message = {"task_id": given["task_id"] or str(uuid.uuid4()), "task_type": task_type.value,
                   "args": args}  # fmt: skip
        tid = submit_task(r, message)
        _after_submit(r, tid, given["wait"], given["as_json"], given["timeout"])

    params = [*_COMMON[:1], *(_option(a) for a in table), *_COMMON[1:]]
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__doc__ = summary
    return command


submit_app.command("backtest")(
    _submit_command(TaskType.BACKTEST, "Queue a backtest of STRATEGY over the symbols and dates.")
)
submit_app.command("screening")(
    _submit_command(TaskType.SCREENING, "Queue a screen of the universe with STRATEGY.")
)


def _warn_without_workers(r: redis.Redis) -> None:
    if QueueView(r, settings().queue_name).workers_alive() == 0:
        err_console.print(
            "[yellow]warning:[/] no worker is alive: the task waits in the queue until one "
            "starts (run `strategyq worker`)",
            highlight=False,
        )


@submit_app.command("sweep")
def submit_sweep(
    strategy: StrategyFile,
    symbols: Annotated[str, typer.Option(help="Comma-separated tickers, e.g. AAPL,MSFT.")],
    start: Annotated[str, typer.Option(help="First date, ISO 8601 (2010-01-01).")],
    end: Annotated[str, typer.Option(help="Last date, ISO 8601 (2012-12-31).")],
    grid: Annotated[
        list[str], typer.Option(help="NAME=V1,V2,… values of one parameter (repeat per parameter).")
    ],
    maximize: Annotated[str, typer.Option(help="Metric to rank by.")] = "sharpe_ratio",
    top_n: Annotated[int, typer.Option(help="How many of the best to list.")] = 10,
    constraint: Annotated[
        str | None, typer.Option(help="Condition on a combination, e.g. 'fast < slow'.")
    ] = None,
    walk_forward: Annotated[
        str | None,
        typer.Option(help="TRAIN:TEST sessions (e.g. 504:126): optimise, then test out of sample."),
    ] = None,
    heatmap: Annotated[
        str | None,
        typer.Option(help="X,Y: the two parameters of the heatmap (default: first two)."),
    ] = None,
    hold_days: Annotated[
        str | None,
        typer.Option(help="Most sessions a trade is held; 'none' = until an exit or a stop."),
    ] = None,
    entry: Annotated[str | None, typer.Option(help="next_open (default) or close.")] = None,
    stop_loss_pct: Annotated[float | None, typer.Option(help="Stop loss, percent.")] = None,
    take_profit_pct: Annotated[float | None, typer.Option(help="Take profit, percent.")] = None,
    commission_bps: Annotated[float | None, typer.Option(help="Commission per side, bps.")] = None,
    slippage_bps: Annotated[float | None, typer.Option(help="Slippage per side, bps.")] = None,
    task_id: Annotated[str | None, typer.Option(help="Task id (default: a new UUID).")] = None,
    wait: Wait = False,
    as_json: AsJson = False,
    timeout: Timeout = 1800.0,
) -> None:
    """Queue a parameter sweep of STRATEGY (a function of df and params) over the grid."""
    options = _sweep_options(
        hold_days, entry, stop_loss_pct, take_profit_pct, commission_bps, slippage_bps, heatmap
    )
    walk = _walk_forward(walk_forward) if walk_forward else None
    r = client()
    _warn_without_workers(r)
    tid = add_sweep_task(
        r,
        task_id or str(uuid.uuid4()),
        read_code(strategy),
        _split(symbols),
        start,
        end,
        parse_grid(grid),
        maximize=maximize,
        top_n=top_n,
        constraint=constraint,
        walk_forward=walk,
        **options,
    )
    _after_submit(r, tid, wait, as_json, timeout)


def _sweep_options(
    hold_days: str | None,
    entry: str | None,
    stop_loss_pct: float | None,
    take_profit_pct: float | None,
    commission_bps: float | None,
    slippage_bps: float | None,
    heatmap: str | None,
) -> dict[str, Any]:
    """The sweep's trade-model and heatmap options that were given."""
    options: dict[str, Any] = {
        k: v
        for k, v in {
            "entry": entry,
            "stop_loss_pct": stop_loss_pct,
            "take_profit_pct": take_profit_pct,
            "commission_bps": commission_bps,
            "slippage_bps": slippage_bps,
        }.items()
        if v is not None
    }
    if hold_days is not None:
        options["hold_days"] = _hold_days(hold_days)
    if heatmap:
        options["heatmap_params"] = _split(heatmap)
    return options


def _walk_forward(text: str) -> dict[str, int]:
    """``--walk-forward TRAIN:TEST`` as the sweep's ``walk_forward`` arg."""
    train, sep, test = text.partition(":")
    if not sep or not train.strip().isdigit() or not test.strip().isdigit():
        raise fail(f"--walk-forward {text!r} must be TRAIN:TEST sessions, e.g. 504:126")
    return {"train_sessions": int(train), "test_sessions": int(test)}


def _after_submit(r: redis.Redis, task_id: str, wait: bool, as_json: bool, timeout: float) -> None:
    if not wait:
        if as_json:
            print(json.dumps({"task_id": task_id, "status": "queued"}))
        else:
            console.print(f"queued [bold]{task_id}[/]")
        return
    _wait_and_show(r, task_id, timeout, as_json)


def _wait_and_show(r: redis.Redis, task_id: str, timeout: float, as_json: bool) -> None:
    """Wait for a terminal result and show it; exit 2 when it did not finish in time."""
    result = wait_with_status(r, task_id, timeout, quiet=as_json)
    if result is None or result.get("status") not in TERMINAL_STATUSES:
        current = QueueView(r).task(task_id)
        if current is not None:
            show_result(task_id, current, as_json)
        raise fail(f"task {task_id} did not finish within {timeout:g} s", 2)
    show_result(task_id, result, as_json)


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
        table = Table(show_header=False)
        table.add_column("field")
        table.add_column("value")
        for key, value in data.items():
            table.add_row(key, _fmt(value))
        console.print(table)
        return
    mode = data.get("execution_mode")
    if mode == "backtest":
        _render_backtest(data)
    elif mode == "screening":
        _render_screening(data)
    elif mode == "sweep":
        render_sweep(console, data, task_id)
    console.print(
        f"ran on worker {data.get('worker_id')} in {duration(data.get('execution_time_ms'))}"
    )


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}"
    return "—" if value is None else str(value)


def _render_backtest(data: dict[str, Any]) -> None:
    summary = data.get("summary") or {}
    console.print(
        f"{_fmt(summary.get('total_instances'))} instances "
        f"({_fmt(summary.get('positive_signals'))} signals) over "
        f"{_fmt(summary.get('symbols_processed'))} symbols, "
        f"{date_range(summary.get('date_range'))}"
    )
    values = data.get("performance_metrics") or {}
    headline = "   ".join(
        f"{label(name)} [bold]{format_metric(name, values.get(name))}[/]"
        for name in HEADLINE
        if name in values
    )
    if "benchmark_return" in values:
        headline += (
            f"   (benchmark {format_metric('benchmark_return', values['benchmark_return'])})"
        )
    console.print(headline)
    metrics = Table(title="all metrics")
    metrics.add_column("metric")
    metrics.add_column("value", justify="right")
    ordered = [*(n for n in METRICS if n in values), *(n for n in values if n not in METRICS)]
    for name in ordered:
        metrics.add_row(label(name), format_metric(name, values[name]))
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
        result = QueueView(client()).task(task_id)
        if html is not None and result is not None:
            from strategyq.api.report import write_report

            size = write_report(html, task_id, result, settings().data_dir)
            err_console.print(f"wrote {html} ({size / 1e6:.1f} MB, opens offline)")
        show_result(task_id, result, as_json)

    @app.command("wait")
    def wait_cmd(task_id: str, timeout: Timeout = 300.0, as_json: AsJson = False) -> None:
        """Wait for a task to finish and show its result."""
        _wait_and_show(client(), task_id, timeout, as_json)

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
