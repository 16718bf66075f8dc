"""What every CLI command shares: settings, a client, one-line errors."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import typer
import typer.main
from typer.core import TyperArgument, TyperOption

from strategyq.errors import StrategyqError
from strategyq.settings import Settings

if TYPE_CHECKING:
    import redis
    from rich.console import Console


class _LazyConsole:
    """A rich ``Console`` made on first use: rich takes a tenth of the start-up of a
    command that prints nothing through it (``worker``, ``--version``, ``--json``)."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Console | None = None

    def __getattr__(self, name: str) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return getattr(self._console, name)

    def made(self) -> Console:
        """The console itself, for rich objects that take one (``Progress(console=...)``)."""
        self.__getattr__("print")
        assert self._console is not None
        return self._console


def unwrap(console: Console) -> Console:
    """The rich ``Console`` behind :data:`console` or :data:`err_console`."""
    return console.made() if isinstance(console, _LazyConsole) else console


console = cast("Console", _LazyConsole())
err_console = cast("Console", _LazyConsole(stderr=True))


def settings() -> Settings:
    return Settings.from_env()


def client(conf: Settings | None = None, *, decode: bool = True) -> redis.Redis:
    # The Redis client is a tenth of a second of imports: only the commands that talk
    # to the server load it.
    from strategyq.connection import connect

    return connect(conf or settings(), decode_responses=decode)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print one red line and return the Exit to raise."""
    err_console.print(f"[red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


_WORDS = {"int": "INTEGER", "float": "NUMBER", "Path": "PATH"}


def _word(param: TyperOption) -> str:
    desc = param.type_descriptor
    if desc.is_choice:
        return "|".join(str(getattr(c, "value", c)) for c in desc.choices or ())
    return _WORDS.get(param.bare_type(), "TEXT")


def _plain_metavars(command: Any) -> None:
    """Help shows a flag bare and a value as a word (``--limit INTEGER``), never ``<bool>``."""
    for param in command.params:
        if isinstance(param, TyperOption) and param.metavar is None:
            param.metavar = "" if param.is_flag else _word(param)
        elif isinstance(param, TyperArgument):
            # The argument's name and help say what it is.
            param.display_type_rich = lambda ctx: None  # type: ignore[method-assign]
    made = command.get_help_option

    def help_option(ctx: Any) -> Any:
        option = made(ctx)
        if option is not None:
            option.metavar = ""
        return option

    # --help is made when help is shown; bare, like every other flag.
    command.get_help_option = help_option
    for sub in getattr(command, "commands", {}).values():
        _plain_metavars(sub)


def run_cli(app: typer.Typer, **kwargs: Any) -> None:
    """Run ``app``, turning our own errors into one line and exit code 1."""
    command = typer.main.get_command(app)
    _plain_metavars(command)
    try:
        command(standalone_mode=True, **kwargs)
    except StrategyqError as exc:
        raise SystemExit(fail(str(exc)).exit_code) from None
