"""``strategyq worker``: run a worker until SIGTERM/SIGINT (or, with --burst, an empty queue)."""

from __future__ import annotations

from dataclasses import replace
from enum import StrEnum
from typing import Annotated

import typer

from strategyq.cli.common import settings
from strategyq.logs import configure_logging
from strategyq.settings import option_help
from strategyq.startup import warming_up


class LogFormat(StrEnum):
    text = "text"
    json = "json"


def register(app: typer.Typer) -> None:
    @app.command("worker")
    def worker_cmd(
        concurrency: Annotated[
            int | None, typer.Option(min=1, help=option_help("concurrency"))
        ] = None,
        burst: Annotated[bool, typer.Option(help="Drain the queue, then exit.")] = False,
        queue: Annotated[str | None, typer.Option(help=option_help("queue_name"))] = None,
        metrics_port: Annotated[
            int | None,
            typer.Option(help=option_help("metrics_port")),
        ] = None,
        log_format: Annotated[LogFormat, typer.Option(help="Log line format.")] = LogFormat.text,
        log_level: Annotated[str, typer.Option(help="Log level.")] = "INFO",
        insecure_no_sandbox: Annotated[
            bool,
            typer.Option(
                "--insecure-no-sandbox",
                help=option_help("insecure_no_sandbox"),
            ),
        ] = False,
    ) -> None:
        """Take tasks from the queue and run them."""
        with warming_up():
            from strategyq.worker import Worker

        configure_logging(log_format.value, log_level)
        conf = settings()
        changes: dict[str, object] = {}
        if concurrency is not None:
            changes["concurrency"] = concurrency
        if queue:
            changes["queue_name"] = queue
        conf = replace(conf, **changes) if changes else conf  # type: ignore[arg-type]
        port = conf.metrics_port if metrics_port is None else metrics_port
        worker = Worker(
            conf,
            burst=burst,
            metrics_port=port or None,
            insecure_no_sandbox=insecure_no_sandbox,
        )
        raise typer.Exit(worker.run())
