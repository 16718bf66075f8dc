"""The ``strategyq`` command starts without what the command it runs does not use.

pandas, numpy and pyarrow take most of a second to import; only the commands that
touch market data or run strategies need them, and they import them when they run.
The Redis client (a tenth of a second), the queue's modules, the worker, prometheus and
rich's tables and progress bars are imported by the commands that use them, never to
register the commands: ``--help`` and ``--version`` load none of them, the queue's
commands not the worker's, the worker not the CLI's renderers. ``serve`` answers its
first request without numpy or the run archive, which only some of its pages use.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import typer

from strategyq.cli import app, build_app
from strategyq.cli.common import _plain_metavars

HEAVY = ("pandas", "numpy", "pyarrow")

# What no command imports to start: a command that uses one imports it when it runs.
NOT_AT_START = (
    *HEAVY,
    "redis",
    "prometheus_client",
    "strategyq.worker",
    "strategyq.queue",
    "strategyq.client",
    "strategyq.cli.waiting",
    "rich.progress",
)

# The queue's read commands talk to Redis and print tables: they run neither a worker
# nor a schedule, and neither submit nor wait for a task.
NOT_FOR_QUEUE_READS = (
    *HEAVY,
    "strategyq.cli.demo",
    "strategyq.cli.serve",
    "strategyq.api",
    "prometheus_client",
    "strategyq.worker",
    "strategyq.observability",
    "strategyq.queue.schedules",
    "cronsim",
    "strategyq.client",
    "strategyq.cli.waiting",
    "rich.progress",
)

# The worker renders nothing and knows no trading: it imports neither the CLI's renderers
# and waiting, nor the queue's read model, nor market data.
NOT_FOR_THE_WORKER = (
    *HEAVY,
    "strategyq.cli.demo",
    "strategyq.cli.tasks",
    "strategyq.api",
    "strategyq.queue.view",
    "strategyq.client",
    "strategyq.cli.waiting",
    "rich.progress",
    "rich.table",
)

# The API and the dashboard load FastAPI, Redis and the pages' modules to start; numpy
# (a backtest's charts and analytics), the run archive (and sqlite3) and market data are
# imported by the requests that use them.
NOT_FOR_SERVE = (
    *HEAVY,
    "strategyq.archive",
    "sqlite3",
    "strategyq.engine",
    "strategyq.worker",
    "strategyq.executor",
    "strategyq.sandbox",
    "strategyq.data.store",
)


def among(modules: set[str] | list[str], prefixes: tuple[str, ...]) -> list[str]:
    """The ``modules`` that are one of ``prefixes`` or inside one."""
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in prefixes))


# Runs each argv through the CLI in one process (``--help`` exits), then writes the
# modules in sys.modules: imports only add up, so one absent there is absent for every argv.
PROBE = """
import json, sys
from strategyq.cli import app, build_app
from strategyq.cli.common import _plain_metavars
for argv in json.loads(sys.argv[1]):
    try:
        app(args=argv, prog_name="strategyq", standalone_mode=True)
    except SystemExit as exc:
        assert exc.code in (0, None), (argv, exc.code)
with open(sys.argv[2], "w") as out:
    json.dump(sorted(sys.modules), out)
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


def test_no_subcommand_help_imports_pandas_redis_the_queue_or_the_worker(tmp_path: Path) -> None:
    paths = command_paths(typer.main.get_command(app))
    assert ("data", "import") in paths and ("submit", "backtest") in paths
    argvs = [[*path, "--help"] for path in paths]
    found = tmp_path / "modules.json"
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(argvs), str(found)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    modules = json.loads(found.read_text())
    assert "strategyq.cli.tasks" in modules  # the probe saw the commands' modules
    assert among(modules, HEAVY) == []
    assert among(modules, NOT_AT_START) == []


def test_version_imports_no_redis_queue_worker_or_rich() -> None:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "strategyq", "--version"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0 and done.stdout.startswith("strategyq "), done.stderr
    modules = imported_modules(done.stderr)
    assert "strategyq.cli.common" in modules  # the parse found the CLI's imports
    assert among(modules, (*NOT_AT_START, "rich", "strategyq.cli.tasks")) == []


def _help(command: Any, argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with contextlib.suppress(SystemExit):
        command.main(args=[*argv, "--help"], prog_name="strategyq", standalone_mode=False)
    return capsys.readouterr().out


def test_a_command_alone_has_the_help_it_has_in_the_whole_cli(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``strategyq NAME …`` registers NAME only: each command's help, byte for byte, and
    each command's options are those of the whole CLI."""
    monkeypatch.setenv("COLUMNS", "120")
    whole = typer.main.get_command(app)
    _plain_metavars(whole)
    paths = command_paths(whole)[1:]
    names = sorted({path[0] for path in paths})
    assert {"queue", "worker", "dlq", "submit", "result", "runs", "scheduler"} <= set(names)
    for name in names:
        alone = typer.main.get_command(build_app({name}))
        _plain_metavars(alone)
        assert name in alone.commands  # type: ignore[attr-defined]
        for path in (p for p in paths if p[0] == name):
            assert _help(alone, list(path), capsys) == _help(whole, list(path), capsys), path


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


def test_queue_reads_import_neither_worker_nor_schedules_nor_waiting(
    redis_url: str, tmp_path: Path
) -> None:
    """``queue``, ``dlq list`` and ``result`` run to the end against a real server."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "STRATEGYQ_"))}
    env.update(STRATEGYQ_HOME=str(tmp_path), REDIS_URL=redis_url)
    for argv, code, says in (
        (["queue"], 0, "queued"),
        (["dlq", "list"], 0, "dead letters"),
        (["result", "no-such-task"], 1, "no result for task no-such-task"),
    ):
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "strategyq", *argv],
            capture_output=True, text=True, timeout=60, env=env,
        )  # fmt: skip
        assert done.returncode == code, done.stderr[-2000:]
        assert says in done.stdout + done.stderr, argv
        modules = imported_modules(done.stderr)
        assert {"redis", "strategyq.queue.view"} <= modules, argv
        assert among(modules, NOT_FOR_QUEUE_READS) == [], argv


def test_worker_imports_no_cli_renderers_or_queue_view(tmp_path: Path) -> None:
    """The worker process as far as its first contact with Redis (here refused, so no
    executor starts): the CLI and the worker's modules are all imported by then."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "STRATEGYQ_"))}
    env.update(STRATEGYQ_HOME=str(tmp_path), REDIS_URL="redis://127.0.0.1:1/0")
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "strategyq", "worker", "--burst"],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert done.returncode == 1 and "cannot reach" in done.stderr, done.stderr[-2000:]
    modules = imported_modules(done.stderr)
    assert {"strategyq.worker.service", "strategyq.executor.client"} <= modules
    assert among(modules, NOT_FOR_THE_WORKER) == []


def test_serve_answers_its_first_request_without_numpy_or_the_archive(
    redis_url: str, tmp_path: Path
) -> None:
    """``strategyq serve`` to its first answer (``/readyz``, as a probe or the tests ask)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "STRATEGYQ_"))}
    env.update(STRATEGYQ_HOME=str(tmp_path), REDIS_URL=redis_url)
    # A socket bound here and handed over (as `strategyq demo` does): no other process can
    # take the port between its choice and the server's start.
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stderr = tmp_path / "stderr.txt"
    with listener, stderr.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-X", "importtime", "-m", "strategyq", "serve",
             "--port", str(port), "--fd", str(listener.fileno())],
            env=env, stdout=subprocess.DEVNULL, stderr=err, pass_fds=[listener.fileno()],
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None, stderr.read_text()[-2000:]
                assert time.monotonic() < deadline, stderr.read_text()[-2000:]
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as r:
                        assert r.status == 200
                        break
                except OSError:  # no answer yet (the server is starting), or a 503
                    time.sleep(0.05)
        finally:
            proc.terminate()
            proc.wait(30)
    modules = imported_modules(stderr.read_text())
    assert {"fastapi", "uvicorn", "strategyq.api.app", "strategyq.api.pages.tasks"} <= modules
    assert among(modules, NOT_FOR_SERVE) == []
