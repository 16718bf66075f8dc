"""``strategyq run backtest|screening|sweep``: run a task here, without Redis or a worker.

The task goes through the same executor process, sandbox host and child as on
a worker (:mod:`strategyq.local`), with the same options as ``submit``, and the
result is shown as ``strategyq result`` shows it.
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from strategyq.cli.common import console, err_console
from strategyq.cli.tasks import AsJson, show_result, task_args_from, task_table, with_options
from strategyq.protocol.envelope import TaskType

run_app = typer.Typer(
    help="Run a backtest, a screen or a sweep here (same engine and sandbox; no Redis, no worker).",
    no_args_is_help=True,
)

_HTML = inspect.Parameter(
    "html",
    inspect.Parameter.KEYWORD_ONLY,
    annotation=Annotated[
        Path | None,
        typer.Option("--html", help="Also write a self-contained HTML report (charts inlined)."),
    ],
    default=None,
)
_INSECURE = inspect.Parameter(
    "insecure_no_sandbox",
    inspect.Parameter.KEYWORD_ONLY,
    annotation=Annotated[
        bool,
        typer.Option(
            "--insecure-no-sandbox",
            help="Run without Landlock and seccomp (trusted code only).",
        ),
    ],
    default=False,
)
_TASK_ID = inspect.Parameter(
    "task_id",
    inspect.Parameter.KEYWORD_ONLY,
    annotation=Annotated[
        str | None, typer.Option(help="Task id shown with the result (default: a new UUID).")
    ],
    default=None,
)
_JSON = inspect.Parameter(
    "as_json", inspect.Parameter.KEYWORD_ONLY, annotation=AsJson, default=False
)


def _run_command(task_type: TaskType, summary: str) -> Callable[..., None]:
    table = task_table(task_type)

    def command(**given: Any) -> None:
        from strategyq.local import LocalSession

        args = task_args_from(given, table)
        task_id = given["task_id"] or str(uuid.uuid4())
        message = {"task_id": task_id, "task_type": task_type.value, "args": args}
        as_json = given["as_json"]
        with LocalSession(insecure_no_sandbox=given["insecure_no_sandbox"]) as local:
            if as_json:
                record = local.run(message)
            else:
                with console.status(f"{task_id}: starting") as status:
                    record = local.run(
                        message, lambda stage: status.update(f"{task_id}: running {stage}")
                    )
        html = given["html"]
        if html is not None:
            from strategyq.api.report import write_report
            from strategyq.settings import Settings

            size = write_report(html, task_id, record, Settings.from_env().data_dir)
            err_console.print(f"wrote {html} ({size / 1e6:.1f} MB, opens offline)")
        show_result(task_id, record, as_json)

    return with_options(command, table, [_TASK_ID, _JSON, _HTML, _INSECURE], summary)


run_app.command("backtest")(
    _run_command(TaskType.BACKTEST, "Backtest STRATEGY over the symbols and dates, here.")
)
run_app.command("screening")(
    _run_command(TaskType.SCREENING, "Screen the universe with STRATEGY, here.")
)
run_app.command("sweep")(
    _run_command(
        TaskType.SWEEP,
        "Run a parameter sweep of STRATEGY (a function of df and params) over the grid, here.",
    )
)
