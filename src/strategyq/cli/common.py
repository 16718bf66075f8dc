"""What every CLI command shares: settings, a client, one-line errors."""

from __future__ import annotations

from typing import Any

import redis
import typer
from rich.console import Console

from strategyq.connection import connect
from strategyq.errors import StrategyqError
from strategyq.settings import Settings

console = Console()
err_console = Console(stderr=True)


def settings() -> Settings:
    return Settings.from_env()


def client(conf: Settings | None = None, *, decode: bool = True) -> redis.Redis:
    return connect(conf or settings(), decode_responses=decode)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print one red line and return the Exit to raise."""
    err_console.print(f"[red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def run_cli(app: typer.Typer, **kwargs: Any) -> None:
    """Run ``app``, turning our own errors into one line and exit code 1."""
    try:
        app(standalone_mode=True, **kwargs)
    except StrategyqError as exc:
        raise SystemExit(fail(str(exc)).exit_code) from None
