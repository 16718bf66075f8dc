"""The CLI's task options come from the task-args table; help shows no type tags."""

from __future__ import annotations

import contextlib
import re
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from strategyq import __version__
from strategyq.cli import app
from strategyq.cli.common import _plain_metavars
from strategyq.protocol.args import args_for
from strategyq.protocol.envelope import TaskType

PRODUCED = (TaskType.BACKTEST, TaskType.SCREENING, TaskType.SWEEP)


def _command() -> Any:
    command = typer.main.get_command(app)
    _plain_metavars(command)
    return command


def _options(group: str, task_type: TaskType) -> set[str]:
    command = _command().commands[group].commands[task_type.value]
    return {opt for param in command.params for opt in param.opts}


@pytest.mark.parametrize("group", ["submit", "run"])
@pytest.mark.parametrize("task_type", PRODUCED, ids=[t.value for t in PRODUCED])
def test_every_task_arg_is_an_option_of_submit_and_run(group: str, task_type: TaskType) -> None:
    options = _options(group, task_type)
    wanted = {a.option for a in args_for(task_type) if a.name != "strategy_code"}
    assert wanted and wanted <= options, wanted - options


def test_the_options_the_issue_named_exist() -> None:
    assert "--params" in _options("submit", TaskType.BACKTEST)
    sweep = _options("submit", TaskType.SWEEP)
    assert {"--exit-on", "--trailing-stop-pct", "--benchmark", "--max-positions",
            "--grid", "--walk-forward", "--heatmap", "--strict-symbols"} <= sweep  # fmt: skip
    assert "--strict-symbols" in _options("run", TaskType.SCREENING)


def _help_paths(command: Any, path: list[str]) -> list[list[str]]:
    out = [path]
    for name, sub in getattr(command, "commands", {}).items():
        out.extend(_help_paths(sub, [*path, name]))
    return out


def test_help_texts_have_no_type_tags(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    command = _command()  # as the console script builds it (run_cli)
    paths = _help_paths(command, [])
    assert ["run", "sweep"] in paths and ["data", "import"] in paths
    for path in paths:
        with contextlib.suppress(SystemExit):
            command.main(args=[*path, "--help"], prog_name="strategyq", standalone_mode=False)
        text = capsys.readouterr().out
        assert "Usage" in text, path
        assert not re.search(r"<(bool|int|float|str|path|list\[str\])>", text), (path, text)


def test_version() -> None:
    done = CliRunner().invoke(app, ["--version"])
    assert done.exit_code == 0 and done.output.strip() == f"strategyq {__version__}"
