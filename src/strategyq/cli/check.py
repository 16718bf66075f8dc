"""``strategyq check STRATEGY.py``: the sandbox's findings for a strategy, nothing run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import orjson
import typer

from strategyq.cli.common import console, err_console, fail


def register(app: typer.Typer) -> None:
    @app.command("check")
    def check_cmd(
        strategy: Annotated[
            Path, typer.Argument(help="The strategy's Python file ('-' reads standard input).")
        ],
        as_json: Annotated[
            bool, typer.Option("--json", help="Print the findings as JSON.")
        ] = False,
    ) -> None:
        """Check a strategy against the sandbox's policy without running it.

        Prints every finding (line, what is refused, what to write instead) and the
        function a run would call; exits 0 when there is none, 1 otherwise.
        """
        from strategyq.check import check_strategy

        try:
            code = (
                typer.get_text_stream("stdin").read()
                if str(strategy) == "-"
                else (strategy.read_text(encoding="utf-8"))
            )
        except (OSError, UnicodeDecodeError) as exc:
            raise fail(f"cannot read {strategy}: {exc}") from None
        result = check_strategy(code)
        if as_json:
            typer.echo(orjson.dumps(result.as_dict(), option=orjson.OPT_INDENT_2).decode())
        elif result.ok:
            params = ", params" if result.takes_params else ""
            console.print(f"ok: a run calls {result.entry}(df{params})", highlight=False)
        else:
            count = len(result.findings)
            err_console.print(
                f"[red]{count} finding{'s' if count != 1 else ''}[/] ({result.error_type}):",
                highlight=False,
            )
            for line in result.message.splitlines():
                err_console.print(f"  {line}", highlight=False, soft_wrap=True, markup=False)
            if result.entry:
                err_console.print(f"a run would call {result.entry}()", highlight=False)
        raise typer.Exit(0 if result.ok else 1)
