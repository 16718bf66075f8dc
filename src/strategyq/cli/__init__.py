"""The ``strategyq`` command. Only the CLI configures logging handlers."""

from __future__ import annotations

from typing import Annotated

import typer

from strategyq.cli import archive as archive_cmd
from strategyq.cli import check as check_cmd
from strategyq.cli import data as data_cmd
from strategyq.cli import demo as demo_cmd
from strategyq.cli import queue as queue_cmd
from strategyq.cli import run as run_cmd
from strategyq.cli import schedule as schedule_cmd
from strategyq.cli import serve as serve_cmd
from strategyq.cli import server as server_cmd
from strategyq.cli import tasks as tasks_cmd
from strategyq.cli import tenants as tenants_cmd
from strategyq.cli import worker as worker_cmd
from strategyq.cli.common import run_cli

app = typer.Typer(
    name="strategyq",
    help="Run trading strategies as backtests and screens from a Redis queue.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(data_cmd.app, name="data")
app.add_typer(server_cmd.app, name="server")
app.add_typer(tasks_cmd.submit_app, name="submit")
app.add_typer(run_cmd.run_app, name="run")
app.add_typer(queue_cmd.dlq_app, name="dlq")
app.add_typer(tenants_cmd.tenant_app, name="tenant")
app.add_typer(tenants_cmd.lane_app, name="lane")
tasks_cmd.register(app)
queue_cmd.register(app)
worker_cmd.register(app)
demo_cmd.register(app)
schedule_cmd.register(app)
serve_cmd.register(app)
check_cmd.register(app)
archive_cmd.register(app)


def _version(value: bool) -> None:
    if value:
        from strategyq import __version__

        print(f"strategyq {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Run trading strategies as backtests and screens from a Redis queue, or here."""


def main() -> None:
    """Console-script entry point."""
    run_cli(app)
