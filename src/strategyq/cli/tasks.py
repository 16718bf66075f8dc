"""``strategyq submit|result|wait|cancel``: produce tasks and read their results."""

from __future__ import annotations

import inspect
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from strategyq.cli.common import client, console, err_console, fail, settings
from strategyq.errors import TenantQuotaExceeded
from strategyq.labels import HEADLINE, METRICS, date_range, duration, format_metric, label
from strategyq.protocol.args import TaskArg, args_for
from strategyq.protocol.envelope import TaskType
from strategyq.protocol.results import TERMINAL_STATUSES

if TYPE_CHECKING:
    import redis

# The Redis client, the queue's modules and rich's tables are imported by the commands
# that use them: every ``strategyq`` command imports this module to register its own.

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


def _split(value: str) -> list[str]:
    return [s.strip() for s in value.split(",") if s.strip()]


def _option(arg: TaskArg) -> inspect.Parameter:
    """A keyword-only typer option for one task arg (required args have no default)."""
    kind: Any = list[str] if arg.repeat else (str if arg.kind is list else arg.kind)
    flags = f"{arg.option}/--no-{arg.option[2:]}" if kind is bool else arg.option
    option = typer.Option(flags, help=arg.help, show_default=False)
    if arg.required:
        return inspect.Parameter(
            arg.name, inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[kind, option]
        )
    return inspect.Parameter(
        arg.name,
        inspect.Parameter.KEYWORD_ONLY,
        annotation=Annotated[kind | None, option],
        default=None,
    )


def task_table(task_type: TaskType) -> list[TaskArg]:
    """The task args that become options of ``submit``/``run`` for ``task_type``."""
    return [a for a in args_for(task_type) if a.name != "strategy_code"]


# Args naming tickers: AAPL,MSFT, @FILE or all (read from the store this command sees).
SYMBOL_ARGS = frozenset({"symbols", "universe"})


def task_args_from(given: dict[str, Any], table: list[TaskArg]) -> dict[str, Any]:
    """The wire ``args`` of the options given (popped from ``given``), strategy included."""
    from strategyq.data.symbols import expand_symbols

    args: dict[str, Any] = {"strategy_code": read_code(given.pop("strategy"))}
    for arg in table:
        value = given.pop(arg.name)
        if value is None:
            continue
        if arg.from_cli is not None:
            args[arg.name] = arg.from_cli(value)
        elif arg.name in SYMBOL_ARGS:
            args[arg.name] = expand_symbols(value, settings().data_dir)
        else:
            args[arg.name] = _split(value) if arg.kind is list else value
    return args


def with_options(
    command: Callable[..., None],
    table: list[TaskArg],
    common: list[inspect.Parameter],
    summary: str,
) -> Callable[..., None]:
    """``command`` with the STRATEGY argument, one option per table arg, then ``common``."""
    params = [_COMMON[0], *(_option(a) for a in table), *common]
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in params}
    command.__doc__ = summary
    return command


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
]


_TENANCY = [
    inspect.Parameter(
        "tenant",
        inspect.Parameter.KEYWORD_ONLY,
        annotation=Annotated[
            str | None,
            typer.Option(help="Whose task it is (default: tenant 'default').", show_default=False),
        ],
        default=None,
    ),
    inspect.Parameter(
        "priority",
        inspect.Parameter.KEYWORD_ONLY,
        annotation=Annotated[
            str | None,
            typer.Option(
                help="Lane: interactive (a screen's default), batch (a backtest's or sweep's) "
                "or one an operator added.",
                show_default=False,
            ),
        ],
        default=None,
    ),
]


def _timeout(default_s: float) -> inspect.Parameter:
    return inspect.Parameter(
        "timeout", inspect.Parameter.KEYWORD_ONLY, annotation=Timeout, default=default_s
    )


def _submit_command(task_type: TaskType, summary: str, timeout_s: float) -> Callable[..., None]:
    """``strategyq submit <task_type>``, with one option per arg of the task-args table."""
    table = task_table(task_type)

    def command(**given: Any) -> None:
        from strategyq.client import submit_task

        args = task_args_from(given, table)
        r = client()
        _warn_without_workers(r)
        message = {
            "task_id": given["task_id"] or str(uuid.uuid4()),
            "task_type": task_type.value,
            "args": args,
        }
        try:
            tid = submit_task(r, message, tenant=given["tenant"], priority=given["priority"])
        except TenantQuotaExceeded as exc:
            raise fail(f"{exc} (try again in {exc.retry_after_s}s)") from None
        _after_submit(r, tid, given["wait"], given["as_json"], given["timeout"])

    return with_options(command, table, [*_COMMON[1:], *_TENANCY, _timeout(timeout_s)], summary)


submit_app.command("backtest")(
    _submit_command(
        TaskType.BACKTEST, "Queue a backtest of STRATEGY over the symbols and dates.", 300.0
    )
)
submit_app.command("screening")(
    _submit_command(TaskType.SCREENING, "Queue a screen of the universe with STRATEGY.", 300.0)
)
submit_app.command("sweep")(
    _submit_command(
        TaskType.SWEEP,
        "Queue a parameter sweep of STRATEGY (a function of df and params) over the grid.",
        1800.0,
    )
)


def _warn_without_workers(r: redis.Redis) -> None:
    from strategyq.queue.view import QueueView

    if QueueView(r, settings().queue_name).workers_alive() == 0:
        err_console.print(
            "[yellow]warning:[/] no worker is alive: the task waits in the queue until one "
            "starts (run `strategyq worker`)",
            highlight=False,
        )


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
    from strategyq.cli.waiting import wait_with_status
    from strategyq.queue.view import QueueView

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
    from rich.table import Table

    status = result.get("status")
    data = result.get("data") or {}
    console.print(f"[bold]{task_id}[/]: {status}  (updated {result.get('updated_at')})")
    kept = data.get("task_args")
    args: dict[str, Any] = kept if isinstance(kept, dict) else {}
    name, tags = args.get("name"), args.get("tags")
    tags = [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []
    if (isinstance(name, str) and name) or tags:
        named = f"name [bold]{name}[/]" if isinstance(name, str) and name else ""
        tagged = f"tags {', '.join(tags)}" if tags else ""
        console.print("   ".join(p for p in (named, tagged) if p), highlight=False)
    times = _times(data)
    if times:
        # One line however narrow the terminal: it is read (and grepped) as one.
        console.print(times, highlight=False, soft_wrap=True)
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
        from strategyq.cli.sweep_view import render_sweep

        render_sweep(console, data, task_id)
    console.print(
        f"ran on worker {data.get('worker_id')} in {duration(data.get('execution_time_ms'))}"
    )


def _times(data: dict[str, Any]) -> str:
    """``submitted … → started … (waited 1.2 s) → finished …``, as far as the record says."""
    submitted = data.get("submitted_at") or data.get("queued_at")
    started, finished = data.get("started_at"), data.get("completed_at")
    steps = [
        f"{what} {at}"
        for what, at in (("submitted", submitted), ("started", started), ("finished", finished))
        if isinstance(at, str)
    ]
    wait = _seconds(submitted, started)
    if wait is not None:
        steps[1] += f" (waited {duration(wait * 1000)} in the queue)"
    return " → ".join(steps)


def _seconds(start: Any, end: Any) -> float | None:
    from datetime import datetime

    if not isinstance(start, str) or not isinstance(end, str):
        return None
    try:
        a = datetime.fromisoformat(start.replace("Z", "+00:00"))
        b = datetime.fromisoformat(end.replace("Z", "+00:00"))
        return max((b - a).total_seconds(), 0.0)
    except (ValueError, TypeError):
        return None


def archived_result(task_id: str) -> dict[str, Any] | None:
    """The run's result from the run archive, when there is one (STRATEGYQ_ARCHIVE_URL, or
    the default SQLite file an archiver made) and it holds the run."""
    conf = settings()
    if not conf.archive_url and not (conf.home / "archive.db").is_file():
        return None
    from strategyq.archive import open_archive
    from strategyq.errors import RunNotFound

    archive = open_archive(conf.archive_db_url)
    try:
        return archive.result(task_id)
    except RunNotFound:
        return None
    finally:
        archive.close()


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}"
    return "—" if value is None else str(value)


def _render_backtest(data: dict[str, Any]) -> None:
    from rich.table import Table

    summary = data.get("summary") or {}
    warmup = summary.get("warmup_instances")
    console.print(
        f"{_fmt(summary.get('total_instances'))} instances "
        f"({_fmt(summary.get('positive_signals'))} signals) over "
        f"{_fmt(summary.get('symbols_processed'))} symbols, "
        f"{date_range(summary.get('date_range'))}"
        + (f"; {warmup} more on warm-up rows before the start, left out" if warmup else "")
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
    from rich.table import Table

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
        """Show a task's result (whatever its status); from the run archive once Redis no
        longer holds it."""
        from strategyq.queue.view import QueueView

        result = QueueView(client()).task(task_id)
        if result is None:
            result = archived_result(task_id)
            if result is not None:
                err_console.print(f"{task_id}: from the run archive (Redis no longer holds it)")
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
        from strategyq.client import cancel_task

        previous = cancel_task(client(), task_id)
        if previous in TERMINAL_STATUSES:
            console.print(f"{task_id} had already finished ({previous}); nothing to cancel")
        elif previous == "queued":
            console.print(f"{task_id} cancelled before it started")
        elif previous == "running":
            console.print(f"{task_id}: cancel requested; its worker stops it now")
        else:
            console.print(f"{task_id}: no record yet; it will be skipped if it arrives")
