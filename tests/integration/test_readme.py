"""The README's Python snippets run as written (against the test server)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.integration.conftest import WorkerProcess

ROOT = Path(__file__).resolve().parents[2]
SEED_CLIENT = 'redis.Redis(host="cache", port=6379, decode_responses=True)'


def readme_python_snippets() -> list[str]:
    """Every ```python block of the README's "Producing tasks" section, in order."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Producing tasks", 1)[1].split("\n## ", 1)[0]
    snippets = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(snippets) >= 2, "the README lost its Python producer examples"
    return snippets


def run(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip


@pytest.fixture(scope="module")
def readme_worker(module_worker_env: dict[str, str]) -> Iterator[WorkerProcess]:
    """One worker for the module's snippets (its heartbeat re-registers it after a flush)."""
    proc = WorkerProcess(module_worker_env, "readme").start()
    yield proc
    proc.stop()


def _section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    return text.split(f"## {title}", 1)[1].split("\n## ", 1)[0]


def _workdir(tmp_path: Path) -> Path:
    """A directory where the README's relative paths (src/strategyq/examples/…) resolve."""
    (tmp_path / "src").symlink_to(ROOT / "src")
    return tmp_path


def test_readme_local_run_snippets_run_as_written(
    worker_env: dict[str, str], tmp_path: Path
) -> None:
    """The "Running locally" section: its commands and its Python, with no Redis at all."""
    env = {**worker_env, "REDIS_URL": "redis://127.0.0.1:1/0"}  # nothing listens there
    cwd = _workdir(tmp_path)
    section = _section("Running locally")
    (commands,) = re.findall(r"```bash\n(.*?)```", section, re.S)
    for command in commands.replace("\\\n", " ").splitlines():
        argv = command.split()
        assert argv[0] == "strategyq", command
        done = subprocess.run([sys.executable, "-m", "strategyq", *argv[1:]], cwd=cwd, env=env,
                              capture_output=True, text=True, timeout=300)  # fmt: skip
        assert done.returncode == 0, (command, done.stdout, done.stderr)
    assert (cwd / "report.html").stat().st_size > 100_000
    (code,) = re.findall(r"```python\n(.*?)```", section, re.S)
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "sharpe_ratio" in done.stdout and "entry_date" in done.stdout
    assert "'fast'" in done.stdout  # the sweep's best params
    assert (cwd / "sma_cross.html").stat().st_size > 100_000


def test_readme_connect_snippet_runs_literally(
    redis_client: redis.Redis, worker_env: dict[str, str], readme_worker: WorkerProcess
) -> None:
    """``strategyq.connect()`` reads REDIS_URL like every strategyq command: no edits needed."""
    snippets = [s for s in readme_python_snippets() if "my-first" in s]
    assert snippets, "the README lost its strategyq.connect() snippet"
    for code in snippets:
        done = run(code, worker_env)
        assert done.returncode == 0, done.stderr
        assert "AttributeError" not in done.stderr
        assert "completed" in done.stdout and "my-first" in done.stdout, done.stdout


def test_readme_first_snippet_and_the_sweep_after_it_run_as_written(
    redis_client: redis.Redis, worker_env: dict[str, str], readme_worker: WorkerProcess
) -> None:
    """The first snippet, then the sweep snippet, which continues it (its redis_client), as
    a reader runs them: one process runs both, the first one's output first."""
    first, _, sweep = readme_python_snippets()[:3]
    # The seed's client line stays visible, as a comment: it is what a Go/seed backend means.
    assert f"# The seed connects with {SEED_CLIENT}" in first
    assert "add_sweep_task(" in sweep
    code = (
        first
        + sweep
        + (
            "\nresult = wait_for_result(redis_client, 'sweep-1', timeout_s=600)\n"
            "print(result['status'], result['data']['best']['params'])\n"
        )
    )
    # As written: strategyq.connect() reads REDIS_URL, as every strategyq command does.
    done = run(code, worker_env)
    assert done.returncode == 0, done.stderr
    assert re.match(r"Found \d+ signals in \d+\.\d+s", done.stdout), done.stdout
    assert re.search(r"^completed \{'fast': \d+, 'slow': \d+\}$", done.stdout, re.M), done.stdout
