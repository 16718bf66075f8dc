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
        timeout=120,
    )  # fmt: skip


@pytest.fixture(scope="module")
def readme_worker(module_worker_env: dict[str, str]) -> Iterator[WorkerProcess]:
    """One worker for the module's snippets (its heartbeat re-registers it after a flush)."""
    proc = WorkerProcess(module_worker_env, "readme").start()
    yield proc
    proc.stop()


def test_readme_python_example_runs(
    redis_client: redis.Redis, worker_env: dict[str, str], readme_worker: WorkerProcess
) -> None:
    code = readme_python_snippets()[0]
    assert SEED_CLIENT in code, "the example should keep the seed's client line"
    # The seed's host "cache" is the one thing a test machine cannot have.
    code = code.replace(
        SEED_CLIENT, f"redis.Redis.from_url({worker_env['REDIS_URL']!r}, decode_responses=True)"
    )
    done = run(code, worker_env)
    assert done.returncode == 0, done.stderr
    assert re.match(r"Found \d+ signals in \d+\.\d+s", done.stdout), done.stdout


def test_readme_connect_snippet_runs_literally(
    redis_client: redis.Redis, worker_env: dict[str, str], readme_worker: WorkerProcess
) -> None:
    """``strategyq.connect()`` reads REDIS_URL like every strategyq command: no edits needed."""
    snippets = [s for s in readme_python_snippets() if "strategyq.connect()" in s]
    assert snippets, "the README lost its strategyq.connect() snippet"
    for code in snippets:
        done = run(code, worker_env)
        assert done.returncode == 0, done.stderr
        assert "AttributeError" not in done.stderr
        assert "completed" in done.stdout and "my-first" in done.stdout, done.stdout
