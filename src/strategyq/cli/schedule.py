"""``strategyq schedule …`` and ``strategyq scheduler``: tasks on a cron calendar."""

from __future__ import annotations

import json
import signal
import threading
from enum import StrEnum
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer

from strategyq.cli.common import client, console, settings
from strategyq.logs import configure_logging

schedule_app = typer.Typer(
    help="Run a screen (or any task) on a cron calendar: add, list, pause, resume, remove, "
    "run-now.",
    no_args_is_help=True,
)
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]


class ScheduledType(StrEnum):
    screening = "screening"
    backtest = "backtest"
    sweep = "sweep"


def _split(value: str | None) -> list[str] | None:
    return [s.strip() for s in value.split(",") if s.strip()] if value else None


@schedule_app.command("add")
def add_cmd(
    name: Annotated[str, typer.Argument(help="Schedule name (part of each run's task id).")],
    task_type: Annotated[ScheduledType, typer.Argument(help="screening, backtest or sweep.")],
    strategy: Annotated[Path, typer.Argument(help="Python file defining the strategy.")],
    cron: Annotated[str, typer.Option(help="Cron expression, e.g. '30 21 * * 1-5'.")],
    tz: Annotated[str, typer.Option(help="IANA time zone of the cron times.")] = "UTC",
    universe: Annotated[
        str | None, typer.Option(help="Screening: comma-separated tickers.")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Screening: results to keep.")] = None,
    symbols: Annotated[str | None, typer.Option(help="Backtest/sweep: tickers.")] = None,
    start: Annotated[str | None, typer.Option(help="Backtest/sweep: first date.")] = None,
    end: Annotated[str | None, typer.Option(help="Backtest/sweep: last date.")] = None,
    grid: Annotated[
        list[str] | None, typer.Option(help="Sweep: NAME=V1,V2,… (repeat per parameter).")
    ] = None,
    maximize: Annotated[str | None, typer.Option(help="Sweep: metric to maximise.")] = None,
    args_json: Annotated[
        str | None, typer.Option("--args-json", help="More task args as a JSON object.")
    ] = None,
    replace: Annotated[bool, typer.Option(help="Replace a schedule of the same name.")] = False,
) -> None:
    """Add a schedule: each due slot enqueues the task NAME:<slot time with offset>."""
    from strategyq.cli.tasks import read_code
    from strategyq.protocol.args import parse_grid
    from strategyq.queue.schedules import add_schedule, make_schedule
    from strategyq.queue.view import QueueView

    args: dict[str, Any] = {"strategy_code": read_code(strategy)}
    optional = {
        "universe": _split(universe),
        "limit": limit,
        "symbols": _split(symbols),
        "start_date": start,
        "end_date": end,
        "param_grid": parse_grid(grid) if grid else None,
        "maximize": maximize,
    }
    args.update({k: v for k, v in optional.items() if v is not None})
    if args_json:
        extra = json.loads(args_json)
        if not isinstance(extra, dict):
            raise typer.BadParameter("--args-json must be a JSON object")
        args.update(extra)
    schedule = make_schedule(name, cron, tz, task_type.value, args)
    r = client()
    add_schedule(r, schedule, replace=replace)
    state = QueueView(r).schedule(name)
    console.print(
        f"schedule [bold]{name}[/]: {schedule.explain()} ({tz}); next run "
        f"{state.next_slot.isoformat(timespec='minutes')}"
    )


@schedule_app.command("list")
def list_cmd(as_json: AsJson = False) -> None:
    """Every schedule, with its state and next run."""
    from rich.table import Table

    from strategyq.queue.view import QueueView

    states = QueueView(client()).schedules()
    if as_json:
        rows = [
            {
                "name": st.schedule.name,
                "cron": st.schedule.cron,
                "tz": st.schedule.tz,
                "task_type": st.schedule.task_type,
                "paused": st.paused,
                "last_slot": st.last_slot.isoformat(timespec="minutes") if st.last_slot else None,
                "next_slot": st.next_slot.isoformat(timespec="minutes"),
            }
            for st in states
        ]
        print(json.dumps(rows, indent=2))
        return
    table = Table(title=f"{len(states)} schedule(s)")
    for column in ("name", "when", "tz", "task", "state", "last slot", "next run"):
        table.add_column(column)
    for st in states:
        s = st.schedule
        table.add_row(
            s.name,
            f"{s.cron}  ({s.explain()})",
            s.tz,
            s.task_type,
            "paused" if st.paused else "active",
            st.last_slot.isoformat(timespec="minutes") if st.last_slot else "—",
            "—" if st.paused else st.next_slot.isoformat(timespec="minutes"),
        )
    console.print(table)


@schedule_app.command("pause")
def pause_cmd(name: str) -> None:
    """Skip the schedule's runs until it is resumed."""
    from strategyq.queue.schedules import pause_schedule

    pause_schedule(client(), name)
    console.print(f"schedule {name} paused")


@schedule_app.command("resume")
def resume_cmd(name: str) -> None:
    """Run the schedule again from its next slot (slots missed while paused are skipped)."""
    from strategyq.queue.schedules import resume_schedule

    resume_schedule(client(), name)
    console.print(f"schedule {name} resumed")


@schedule_app.command("remove")
def remove_cmd(name: str) -> None:
    """Delete the schedule (runs already queued are left alone)."""
    from strategyq.queue.schedules import remove_schedule

    remove_schedule(client(), name)
    console.print(f"schedule {name} removed")


@schedule_app.command("run-now")
def run_now_cmd(name: str) -> None:
    """Enqueue one run of the schedule now; prints its task id."""
    from strategyq.queue.schedules import run_now

    conf = settings()
    task_id = run_now(client(conf), name, queue=conf.queue_name, result_ttl_s=conf.result_ttl_s)
    console.print(f"queued [bold]{task_id}[/]")


def register(app: typer.Typer) -> None:
    app.add_typer(schedule_app, name="schedule")

    @app.command("scheduler")
    def scheduler_cmd(
        interval: Annotated[float, typer.Option(help="Seconds between ticks.")] = 5.0,
        log_level: Annotated[str, typer.Option(help="Log level.")] = "INFO",
    ) -> None:
        """Enqueue due schedule runs without a worker (where workers scale to zero).

        Workers do this too; any number of schedulers and workers together
        still enqueue each slot once.
        """
        from strategyq.queue.schedules import Ticker

        configure_logging("text", log_level)
        conf = settings()
        ticker = Ticker(client(conf), queue=conf.queue_name, result_ttl_s=conf.result_ttl_s)
        stop = threading.Event()

        def on_signal(_signum: int, _frame: FrameType | None) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        while not stop.is_set():
            ticker.tick()
            stop.wait(interval)
