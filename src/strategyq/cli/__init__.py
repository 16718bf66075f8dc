"""The ``strategyq`` command. Only the CLI configures logging handlers."""

from __future__ import annotations

import typer

from strategyq.cli import data as data_cmd

app = typer.Typer(
    name="strategyq",
    help="Run trading strategies as backtests and screens from a Redis queue.",
    no_args_is_help=True,
    add_completion=False,
)
app.add_typer(data_cmd.app, name="data")


def main() -> None:
    """Console-script entry point."""
    app()
