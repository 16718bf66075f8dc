"""Waiting for a task in the terminal: a live progress bar, and what Ctrl-C means.

A sweep shows a bar of combinations done out of the total with the time left;
any other task shows its status and stage with the time spent. The bar goes to
stderr, so ``--json`` output on stdout stays clean. Ctrl-C stops the waiting,
not the task: the message says so and how to follow or cancel it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import typer

from strategyq.cli.common import err_console, unwrap

if TYPE_CHECKING:
    import redis

INTERRUPTED = 130
"""Exit status after Ctrl-C (128 + SIGINT), as shells report it."""

STAGES = {
    "starting": "starting",
    "loading_data": "loading the market data",
    "running_strategy": "running the strategy",
    "computing_metrics": "computing the metrics",
    "running_chunks": "running the combinations",
}


def describe(record: dict[str, Any]) -> str:
    """``running · running the strategy`` from a task's current record."""
    status = str(record.get("status") or "waiting for its record")
    data = record.get("data")
    if not isinstance(data, dict):
        data = {}
    stage = STAGES.get(str(data.get("stage")), str(data.get("stage") or ""))
    return f"{status} · {stage}" if stage else status


def wait_with_status(
    r: redis.Redis, task_id: str, timeout: float, *, quiet: bool = False
) -> dict[str, Any] | None:
    """Wait for a terminal result with a live progress bar; Ctrl-C leaves the task running.

    Returns:
        The terminal result, or the current record (or None) when ``timeout`` passed.

    Raises:
        typer.Exit: 130 after Ctrl-C, having said how to follow or cancel the task.
    """
    from strategyq.queue.view import QueueView

    try:
        if quiet:
            return QueueView(r).wait(task_id, timeout)
        return _follow(r, task_id, timeout)
    except KeyboardInterrupt:
        err_console.print(
            f"\nstopped waiting; task [bold]{task_id}[/] keeps running on its worker.\n"
            f"  follow it again:  strategyq wait {task_id}\n"
            f"  cancel it:        strategyq cancel {task_id}"
        )
        raise typer.Exit(INTERRUPTED) from None


def _follow(r: redis.Redis, task_id: str, timeout: float) -> dict[str, Any] | None:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from strategyq.queue.view import QueueView

    view = QueueView(r)
    deadline = time.monotonic() + timeout
    columns = (
        SpinnerColumn(),
        TextColumn("[bold]{task.fields[task_id]}[/] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("elapsed"),
        TimeElapsedColumn(),
        TextColumn("left"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=unwrap(err_console), transient=True) as progress:
        bar = progress.add_task("waiting", total=None, task_id=task_id)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return view.task(task_id)
            # Short blocking waits so the bar follows the stage and the combinations done.
            result = view.wait(task_id, min(0.5, remaining))
            if result is not None:
                return result
            current = view.task(task_id) or {}
            data = current.get("data") if isinstance(current.get("data"), dict) else {}
            done_total = data.get("progress") if isinstance(data, dict) else None
            if isinstance(done_total, dict) and isinstance(done_total.get("total"), int):
                progress.update(
                    bar,
                    description=describe(current),
                    total=done_total["total"],
                    completed=int(done_total.get("done") or 0),
                )
            else:
                progress.update(bar, description=describe(current))
