"""The ``strategyq`` command. Only the CLI configures logging handlers.

``strategyq NAME …`` registers the command ``NAME`` only (and imports its module
only): the others' modules, and typer's build of every command's options, are a
third of the start-up of a command that does little. ``strategyq``, ``--help``
and an unknown name get the whole command, :data:`app`.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Annotated, Any

import typer

from strategyq.cli.common import run_cli

if TYPE_CHECKING:
    app: typer.Typer


def _group(module: str, attribute: str, name: str) -> Callable[[typer.Typer], None]:
    def add(app: typer.Typer) -> None:
        sub = getattr(importlib.import_module(f"strategyq.cli.{module}"), attribute)
        app.add_typer(sub, name=name)

    return add


def _commands(module: str) -> Callable[[typer.Typer], None]:
    def add(app: typer.Typer) -> None:
        importlib.import_module(f"strategyq.cli.{module}").register(app)

    return add


# The command names each step registers, in the order the help lists them.
_STEPS: tuple[tuple[tuple[str, ...], Callable[[typer.Typer], None]], ...] = (
    (("data",), _group("data", "app", "data")),
    (("server",), _group("server", "app", "server")),
    (("submit",), _group("tasks", "submit_app", "submit")),
    (("run",), _group("run", "run_app", "run")),
    (("dlq",), _group("queue", "dlq_app", "dlq")),
    (("tenant",), _group("tenants", "tenant_app", "tenant")),
    (("lane",), _group("tenants", "lane_app", "lane")),
    (("result", "wait", "cancel"), _commands("tasks")),
    (("queue",), _commands("queue")),
    (("worker",), _commands("worker")),
    (("demo",), _commands("demo")),
    (("schedule", "scheduler"), _commands("schedule")),
    (("serve",), _commands("serve")),
    (("check",), _commands("check")),
    (("archive", "runs"), _commands("archive")),
)
_NAMES = frozenset(name for names, _ in _STEPS for name in names)


def _version(value: bool) -> None:
    if value:
        from strategyq import __version__

        print(f"strategyq {__version__}")
        raise typer.Exit()


def _options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """Run trading strategies as backtests and screens from a Redis queue, or here."""


def build_app(names: Collection[str] | None = None) -> typer.Typer:
    """The ``strategyq`` command with the commands ``names`` (every one when None)."""
    built = typer.Typer(
        name="strategyq",
        help="Run trading strategies as backtests and screens from a Redis queue.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )
    built.callback()(_options)
    for provided, add in _STEPS:
        if names is None or not set(names).isdisjoint(provided):
            add(built)
    return built


def __getattr__(name: str) -> Any:
    if name == "app":
        whole = build_app()
        globals()["app"] = whole
        return whole
    raise AttributeError(f"module 'strategyq.cli' has no attribute {name!r}")


def main() -> None:
    """Console-script entry point."""
    args = sys.argv[1:]
    if args and args[0] in _NAMES:
        run_cli(build_app({args[0]}))
    elif args == ["--version"]:
        run_cli(build_app(()))
    else:
        run_cli(build_app())
