"""``strategyq server status|start|stop``: the embedded Valkey server."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from strategyq.settings import Settings

if TYPE_CHECKING:
    from rich.table import Table

app = typer.Typer(
    help="Manage the embedded Valkey server (used when REDIS_URL/REDIS_HOST are unset).",
    no_args_is_help=True,
)

_FIELDS = (
    ("running", "running"),
    ("pid", "pid"),
    ("version", "version"),
    ("socket", "socket"),
    ("dir", "directory"),
    ("aof", "AOF persistence"),
    ("used_memory_human", "memory used"),
    ("keys", "keys (db 0)"),
)


def _format(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def status_table(status: dict[str, Any]) -> Table:
    """A two-column table of :meth:`EmbeddedServer.status`."""
    from rich.table import Table

    table = Table(title="embedded Valkey", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for key, label in _FIELDS:
        table.add_row(label, _format(status.get(key)))
    return table


@app.command()
def status() -> None:
    """Show whether the embedded server runs, where, and what it holds."""
    from rich.console import Console

    from strategyq.embedded_valkey import EmbeddedServer

    settings = Settings.from_env()
    console = Console()
    if not settings.redis.embedded:
        console.print(
            "The embedded server is not in use: REDIS_URL/REDIS_HOST is set; "
            f"strategyq connects to {settings.redis.describe()}",
            soft_wrap=True,
        )
        return
    console.print(status_table(EmbeddedServer(settings.server_dir).status()))


@app.command()
def start() -> None:
    """Start the embedded server (or reuse the one already running)."""
    from rich.console import Console

    from strategyq.embedded_valkey import EmbeddedServer

    settings = Settings.from_env()
    server = EmbeddedServer(settings.server_dir)
    url = server.ensure_running()
    console = Console()
    console.print(f"embedded Valkey running at {url}", soft_wrap=True)
    if not settings.redis.embedded:
        console.print(
            f"note: REDIS_URL/REDIS_HOST is set, so strategyq uses {settings.redis.describe()}",
            soft_wrap=True,
        )


@app.command()
def stop() -> None:
    """Stop the embedded server; queued tasks stay on disk (AOF) for the next start."""
    from rich.console import Console

    from strategyq.embedded_valkey import EmbeddedServer

    settings = Settings.from_env()
    stopped = EmbeddedServer(settings.server_dir).stop()
    Console().print("embedded Valkey stopped" if stopped else "embedded Valkey was not running")
