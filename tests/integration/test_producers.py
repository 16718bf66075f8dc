"""The Go and Node producers in examples/, built and run against a live worker.

Each pushes a backtest and a screen as its language's JSON encoder writes them,
blocks on the completion list (no polling) and prints the results. The tests
check the raw messages on the queue before a worker exists, then start one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import redis

from strategyq.examples import source
from strategyq.queue.tenants import Tenancy
from tests.integration.conftest import wait_until
from tests.system_packages import require_command, require_path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "src" / "strategyq" / "examples"
GO_PACKAGES = ["golang-go", "golang-github-gomodule-redigo-dev"]
REDIGO = "/usr/share/gocode/src/github.com/gomodule/redigo"


def _go_producer(tmp_path: Path) -> list[str]:
    go = require_command("go", GO_PACKAGES)
    require_path(REDIGO, GO_PACKAGES)
    gopath = f"{ROOT / 'examples' / 'go'}:/usr/share/gocode"
    env = {
        **os.environ,
        "GO111MODULE": "off",
        "GOPATH": gopath,
        "GOCACHE": str(tmp_path / "gocache"),
        "GOFLAGS": "",
    }
    binary = tmp_path / "producer"
    proc = subprocess.run(
        [go, "build", "-o", str(binary), "strategyq-producer"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return [str(binary)]


def _node_producer(tmp_path: Path) -> list[str]:
    node, npm = require_command("node", ["nodejs"]), require_command("npm", ["npm"])
    work = tmp_path / "node"
    work.mkdir()
    for name in ("package.json", "package-lock.json", "producer.js"):
        shutil.copy(ROOT / "examples" / "node" / name, work / name)
    proc = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=work, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, f"npm ci could not install the redis client: {proc.stderr[-500:]}"
    return [node, str(work / "producer.js")]


def _check_go_message(task: dict[str, Any], raw: str) -> None:
    # encoding/json sorts map keys and writes no spaces; RFC 3339 dates end in Z.
    assert raw == json.dumps(task, sort_keys=True, separators=(",", ":")).replace(
        "<", "\\u003c"
    ).replace(">", "\\u003e").replace("&", "\\u0026")
    if task["task_type"] == "backtest":
        assert task["args"]["start_date"] == "2011-01-01T00:00:00Z"
        assert task["args"]["end_date"] == "2012-06-30T23:59:59Z"


def _check_node_message(task: dict[str, Any], raw: str) -> None:
    # JSON.stringify keeps insertion order; toISOString writes milliseconds and Z.
    assert raw == json.dumps(task, separators=(",", ":"), ensure_ascii=False)
    assert list(task) == ["task_id", "task_type", "args", "tenant"]
    if task["task_type"] == "backtest":
        assert task["args"]["start_date"] == "2011-01-01T00:00:00.000Z"
        assert task["args"]["end_date"] == "2012-06-30T23:59:59.000Z"


@pytest.mark.parametrize("language", ["go", "node"])
def test_producer_pushes_waits_without_polling_and_prints_results(
    language: str,
    tmp_path: Path,
    redis_client: redis.Redis,
    redis_url: str,
    spawn_worker: Any,
) -> None:
    command = _go_producer(tmp_path) if language == "go" else _node_producer(tmp_path)
    prefix = f"{language}-{uuid.uuid4().hex[:8]}"
    dash = "-" if language == "go" else "--"
    env = {k: v for k, v in os.environ.items() if not k.startswith("REDIS_")}
    env["REDIS_URL"] = redis_url
    producer = subprocess.Popen(
        [
            *command,
            f"{dash}backtest", str(EXAMPLES / "gap_up.py"),
            f"{dash}screen", str(EXAMPLES / "momentum_screen.py"),
            f"{dash}symbols", "AAPL,MSFT,GOOG",
            f"{dash}universe", "AAPL,MSFT,GOOG,IBM",
            f"{dash}start", "2011-01-01", f"{dash}end", "2012-06-30",
            f"{dash}limit", "3", f"{dash}id-prefix", prefix,
            f"{dash}tenant", f"acme-{language}",
        ],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        # No worker yet: the messages wait on the queue exactly as the producer wrote them.
        wait_until(lambda: redis_client.llen("strategy_queue") == 2, timeout_s=60)
        raws = [str(r) for r in redis_client.lrange("strategy_queue", 0, -1)]
        tasks = [json.loads(r) for r in raws]
        check = _check_go_message if language == "go" else _check_node_message
        for task, raw in zip(tasks, raws, strict=True):
            check(task, raw)
        assert {t["task_id"] for t in tasks} == {f"{prefix}-backtest", f"{prefix}-screen"}
        assert {t["tenant"] for t in tasks} == {f"acme-{language}"}
        assert tasks[0]["args"]["strategy_code"] == source("momentum_screen")
        assert producer.poll() is None, "the producer waits for the results"
        spawn_worker(f"w-{language}")
        out, err = producer.communicate(timeout=180)
    finally:
        if producer.poll() is None:
            producer.kill()
            producer.communicate()
    assert producer.returncode == 0, out + err
    backtest = json.loads(redis_client.get(f"task_result:{prefix}-backtest") or "null")
    screen = json.loads(redis_client.get(f"task_result:{prefix}-screen") or "null")
    assert backtest["status"] == screen["status"] == "completed"
    signals = len(backtest["data"]["instances"])
    ranked = ",".join(r["ticker"] for r in screen["data"]["ranked_results"])
    lines = out.splitlines()
    assert lines[:2] == [f"queued backtest {prefix}-backtest", f"queued screening {prefix}-screen"]
    assert lines[2].startswith(f"{prefix}-backtest completed: backtest, {signals} signals, ")
    assert lines[3] == f"{prefix}-screen completed: screening, 3 results: {ranked}"
    assert signals > 0
    # Both ran as the producer's tenant, each in its type's default lane.
    waits = Tenancy(redis_client).tenant(f"acme-{language}").waits
    assert {lane: w.samples for lane, w in waits.items()} == {"batch": 1, "interactive": 1}
    print(out, file=sys.stderr)
