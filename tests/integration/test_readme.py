"""The README's Python producer example runs as written (against the test server)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parents[2]
SEED_CLIENT = 'redis.Redis(host="cache", port=6379, decode_responses=True)'


def readme_python_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("### From Python", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the README lost its Python producer example"
    return match.group(1)


def test_readme_python_example_runs(
    redis_client: redis.Redis, worker_env: dict[str, str], spawn_worker: object
) -> None:
    code = readme_python_example()
    assert SEED_CLIENT in code, "the example should keep the seed's client line"
    code = code.replace(
        SEED_CLIENT, f"redis.Redis.from_url({worker_env['REDIS_URL']!r}, decode_responses=True)"
    )
    spawn_worker("readme")  # type: ignore[operator]
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=worker_env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert re.match(r"Found \d+ signals in \d+\.\d+s", done.stdout), done.stdout
