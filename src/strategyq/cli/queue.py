"""``strategyq queue`` and ``strategyq dlq``: what the queue holds, and the dead letters."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from strategyq.cli.common import client, console, settings

dlq_app = typer.Typer(help="Inspect, retry or purge dead-lettered tasks.", no_args_is_help=True)
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def register(app: typer.Typer) -> None:
    @app.command("queue")
    def queue_cmd(as_json: AsJson = False) -> None:
        """Queue depth, in-flight tasks per worker (with attempts), workers alive, dead letters."""
        from rich.table import Table

        from strategyq.queue.view import QueueView

        conf = settings()
        stats = QueueView(client(conf), conf.queue_name).stats().as_dict()
        if as_json:
            print(json.dumps(stats, indent=2))
            return
        console.print(
            f"[bold]{stats['queue']}[/]: {stats['depth']} queued, {stats['in_flight']} in flight, "
            f"{stats['workers_alive']} worker(s) alive, {stats['dead_letters']} dead letter(s)"
        )
        if stats["workers"]:
            table = Table(title="workers")
            for c in ("worker", "alive", "task", "attempts", "status", "stage"):
                table.add_column(c)
            for w in stats["workers"]:
                tasks = w["in_flight"] or [{}]
                for t in tasks:
                    table.add_row(
                        w["worker_id"],
                        "yes" if w["alive"] else "[red]no[/]",
                        t.get("task_id", "—"),
                        str(t.get("attempts", "")),
                        str(t.get("status") or ""),
                        str(t.get("stage") or ""),
                    )
            console.print(table)


@dlq_app.command("list")
def dlq_list(
    count: Annotated[int, typer.Option(help="How many entries, newest first.")] = 50,
    as_json: AsJson = False,
) -> None:
    """Show dead-lettered tasks and why they are there."""
    from rich.table import Table

    from strategyq.queue.view import QueueView

    entries = [e.as_dict() for e in QueueView(client()).dead_letters(count)]
    if as_json:
        print(json.dumps(entries, indent=2))
        return
    table = Table(title=f"dead letters ({len(entries)} shown)")
    for c in ("at", "task", "reason", "attempts", "error"):
        table.add_column(c)
    for e in entries:
        table.add_row(
            str(e.get("at", "")),
            str(e.get("task_id") or "—"),
            str(e.get("reason", "")),
            str(e.get("attempts", "")),
            str(e.get("error", ""))[:120],
        )
    console.print(table)


@dlq_app.command("retry")
def dlq_retry(
    task_id: Annotated[str | None, typer.Argument(help="Only this task (default: all).")] = None,
) -> None:
    """Put dead-lettered tasks back on the queue with fresh attempts."""
    from strategyq.queue.admin import retry_dead_letters

    conf = settings()
    report = retry_dead_letters(
        client(conf), conf.queue_name, task_id, result_ttl_s=conf.result_ttl_s
    )
    console.print(f"{report.moved} task(s) back on {conf.queue_name}")
    for what, why in report.skipped:
        console.print(f"skipped {what}: {why}", highlight=False)


@dlq_app.command("purge")
def dlq_purge(
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask.")] = False,
) -> None:
    """Delete every dead-letter entry."""
    from strategyq.queue.admin import purge_dead_letters

    if not yes:
        typer.confirm("Delete every dead-letter entry?", abort=True)
    console.print(f"{purge_dead_letters(client())} entr(ies) purged")
