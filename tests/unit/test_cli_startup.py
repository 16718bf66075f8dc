"""The ``strategyq`` command starts without pandas, numpy or pyarrow.

Those take most of a second to import; only the commands that touch market data or
run strategies need them, and they import them when they run. ``--help`` of the
command and of every subcommand must not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import typer

from strategyq.cli import app

HEAVY = ("pandas", "numpy", "pyarrow")

# Runs each argv through the CLI in one process (``--help`` exits), then lists the
# heavy modules in sys.modules: imports only add up, so none there means none for any.
PROBE = f"""
import json, sys
from strategyq.cli import app
for argv in json.loads(sys.argv[1]):
    try:
        app(args=argv, prog_name="strategyq", standalone_mode=True)
    except SystemExit as exc:
        assert exc.code in (0, None), (argv, exc.code)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})
with open(sys.argv[2], "w") as out:
    json.dump(heavy, out)
"""


def command_paths(command: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command and subcommand of the CLI, as the words that name it (a group's
    subcommands are in its ``commands``)."""
    paths = [prefix]
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        paths.extend(command_paths(sub, (*prefix, name)))
    return paths


def imported_modules(stderr: str) -> set[str]:
    """The module names in ``python -X importtime`` output."""
    names = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            name = line.rsplit("|", 1)[1].strip()
            if name != "package":  # the header line
                names.add(name)
    return names


def test_help_imports_no_pandas_numpy_or_pyarrow() -> None:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "strategyq", "--help"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Usage" in done.stdout
    modules = imported_modules(done.stderr)
    assert "strategyq.cli" in modules  # the parse found the imports
    heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY)
    assert heavy == [], f"strategyq --help imports {heavy[:10]}"


def test_no_subcommand_help_imports_pandas_numpy_or_pyarrow(tmp_path: Path) -> None:
    paths = command_paths(typer.main.get_command(app))
    assert ("data", "import") in paths and ("submit", "backtest") in paths
    argvs = [[*path, "--help"] for path in paths]
    found = tmp_path / "heavy.json"
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(argvs), str(found)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert json.loads(found.read_text()) == []


def test_a_command_that_reads_market_data_still_imports_what_it_needs(tmp_path: Path) -> None:
    """The imports moved into the commands: ``data list`` runs and finds its modules."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "STRATEGYQ_"))}
    env["STRATEGYQ_HOME"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "strategyq", "data", "list"],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "is empty" in done.stdout
    assert {"pyarrow", "numpy"} <= imported_modules(done.stderr)


def test_queue_commands_import_no_pandas(tmp_path: Path) -> None:
    """``submit`` and ``result`` read symbol lists and the queue, not market data: the
    ``strategyq.data`` package loads only the modules a command asks for."""
    strategy = tmp_path / "s.py"
    strategy.write_text("def s(df):\n    return []\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "STRATEGYQ_"))}
    # Nothing listens on port 1: each command gets as far as the queue, then stops.
    env.update(STRATEGYQ_HOME=str(tmp_path), REDIS_URL="redis://127.0.0.1:1/0")
    for argv in (
        ["submit", "backtest", str(strategy), "--symbols", "AAPL,MSFT", "--start", "2010-01-01",
         "--end", "2011-01-01"],
        ["result", "some-task"],
    ):  # fmt: skip
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "strategyq", *argv],
            capture_output=True, text=True, timeout=60, env=env,
        )  # fmt: skip
        assert done.returncode == 1 and "cannot reach" in done.stderr, done.stderr[-2000:]
        modules = imported_modules(done.stderr)
        assert "strategyq.data.symbols" in modules or argv[0] == "result", argv
        assert "pandas" not in modules, argv
