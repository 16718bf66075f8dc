"""``strategyq archive`` (the archiver process) and ``strategyq runs`` (search the archive)."""

from __future__ import annotations

import json
import signal
from typing import Annotated, Any

import typer

from strategyq.cli.common import client, console, settings
from strategyq.logs import configure_logging
from strategyq.startup import warming_up


def archiver_config(conf: Any) -> Any:
    from strategyq.archive.archiver import ArchiverConfig

    return ArchiverConfig(
        url=conf.archive_db_url,
        result_ttl_s=conf.result_ttl_s,
        feed_max=conf.archive_feed_max,
        batch=conf.archive_batch,
        retention_days=conf.archive_retention_days,
        retention_runs=conf.archive_retention_runs,
        prune_interval_s=conf.archive_prune_interval_s,
        linger_s=conf.archive_linger_s,
    )


Name = Annotated[str | None, typer.Option(help="Runs with this name task arg.")]
Tag = Annotated[list[str] | None, typer.Option(help="Runs with this tag (repeat: all of them).")]
Fingerprint = Annotated[
    str | None, typer.Option(help="Runs of this strategy version (its source fingerprint).")
]
Symbol = Annotated[str | None, typer.Option(help="Runs over this ticker.")]
Since = Annotated[str | None, typer.Option(help="Ended on or after (2024-05-01 or ISO time).")]
Until = Annotated[str | None, typer.Option(help="Ended on or before.")]
Status = Annotated[str | None, typer.Option(help="completed, error or cancelled.")]
TaskTypeOpt = Annotated[str | None, typer.Option("--type", help="backtest, screening or sweep.")]
Metric = Annotated[
    list[str] | None,
    typer.Option(help="A metric condition, e.g. 'sharpe_ratio>1' (repeat: all of them)."),
]


def register(app: typer.Typer) -> None:
    @app.command("archive")
    def archive_cmd(
        off: Annotated[
            bool, typer.Option("--off", help="Stop feeding the archive (workers stop the XADD).")
        ] = False,
        once: Annotated[
            bool, typer.Option("--once", help="Copy what Redis holds now, then exit.")
        ] = False,
        missed: Annotated[
            bool,
            typer.Option("--missed", help="List runs gone from Redis before they were copied."),
        ] = False,
        metrics_port: Annotated[
            int | None,
            typer.Option(help="Port of /metrics, /healthz, /readyz (default 9102; 0: any free)."),
        ] = None,
        metrics_host: Annotated[
            str | None, typer.Option(help="Address of the metrics port (default 127.0.0.1).")
        ] = None,
        log_format: Annotated[str, typer.Option(help="Log line format: text or json.")] = "text",
        log_level: Annotated[str, typer.Option(help="Log level.")] = "INFO",
    ) -> None:
        """Copy every run that ends into the run archive (SQLite under STRATEGYQ_HOME, or
        STRATEGYQ_ARCHIVE_URL), until stopped."""
        with warming_up():
            from strategyq.archive import open_archive
            from strategyq.archive.archiver import Archiver
            from strategyq.archive.db import describe
            from strategyq.observability import HealthServer
            from strategyq.queue import archive_feed

        configure_logging("json" if log_format == "json" else "text", log_level)
        conf = settings()
        r = client(conf)
        if off:
            archive_feed.switch_off(r)
            console.print("the archive feed is off: runs that end from now on are not fed")
            return
        if missed:
            archive = open_archive(conf.archive_db_url)
            try:
                for task_id, reason, ms in archive.missed():
                    print(f"{task_id}\t{reason}\t{ms}")
            finally:
                archive.close()
            return
        archiver = Archiver(r, archiver_config(conf))
        if once:
            archive_feed.switch_on(r, conf.archive_feed_max)
            archiver._start()
            total = archiver.caught_up
            while (n := archiver.step()) or archive_feed.feed_oldest_after(r, archiver.cursor):
                total += n
            archiver.db.close()
            console.print(f"archived {total} runs into {describe(conf.archive_db_url)}")
            return
        health = HealthServer(
            archiver.metrics,
            conf.archive_port if metrics_port is None else metrics_port,
            host=metrics_host or conf.metrics_host,
            redis_ping=lambda: bool(r.ping()),
            ready=lambda: archiver.ready,
        )
        health.start()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: archiver.stop())
        console.print(f"archiving into {describe(conf.archive_db_url)} (metrics on :{health.port})")
        try:
            archiver.run()
        finally:
            health.stop()

    @app.command("runs")
    def runs_cmd(
        name: Name = None,
        tag: Tag = None,
        fingerprint: Fingerprint = None,
        symbol: Symbol = None,
        since: Since = None,
        until: Until = None,
        status: Status = None,
        task_type: TaskTypeOpt = None,
        metric: Metric = None,
        limit: Annotated[int, typer.Option(help="Runs per page (1-1000).")] = 50,
        page: Annotated[
            str | None, typer.Option("--next", help="The page token a previous page printed.")
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the page as JSON.")] = False,
    ) -> None:
        """Search the run archive, newest first (the filters of GET /v1/runs)."""
        from strategyq.archive import open_archive
        from strategyq.archive.store import RunFilter

        flt = RunFilter.build(
            name=name,
            tag=tag,
            fingerprint=fingerprint,
            symbol=symbol,
            since=since,
            until=until,
            status=status,
            task_type=task_type,
            metric=metric,
            limit=limit,
            before=page,
        )
        archive = open_archive(settings().archive_db_url)
        try:
            found = archive.search(flt)
        finally:
            archive.close()
        if as_json:
            print(json.dumps({"runs": found.runs, "next": found.next}))
            return
        _print_runs(found.runs, found.next)


def _print_runs(runs: list[dict[str, Any]], token: str | None) -> None:
    from rich.table import Table

    table = Table(show_edge=False)
    for column in ("ended", "task id", "name", "type", "status", "sharpe", "return", "tags"):
        table.add_column(column)
    for run in runs:
        m = run["metrics"]
        table.add_row(
            run["finished_at"][:19].replace("T", " "),
            run["task_id"],
            run["name"] or "",
            run["task_type"],
            run["status"],
            "" if m["sharpe_ratio"] is None else f"{m['sharpe_ratio']:.2f}",
            "" if m["total_return"] is None else f"{m['total_return']:.2%}",
            ",".join(run["tags"]),
        )
    console.print(table)
    if token:
        console.print(f"more: strategyq runs … --next {token}", highlight=False)
