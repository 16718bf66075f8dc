"""A worker on a kernel without Landlock refuses to run tasks, unless told to accept the risk.

The "kernel without Landlock" is real: the worker is started under a seccomp
filter that makes the Landlock system calls fail with ENOSYS, as they do on
kernels older than 5.13 or built without it.
"""

from __future__ import annotations

import subprocess
import sys

import redis

from strategyq import add_backtest_task, get_task_result, wait_for_result
from strategyq.examples import source

WITHOUT_LANDLOCK = """
import errno, os, sys
import pyseccomp as sc
f = sc.SyscallFilter(sc.ALLOW)
for name in ("landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self"):
    f.add_rule(sc.ERRNO(errno.ENOSYS), name)
f.load()
os.execv(sys.executable, [sys.executable, "-m", "strategyq", "worker", *sys.argv[1:]])
"""


def run_worker(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_LANDLOCK, "--burst", "--metrics-port", "0", *args],
        env={**env, "STRATEGYQ_WORKER_ID": "no-landlock"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_worker_refuses_without_landlock(
    redis_client: redis.Redis, worker_env: dict[str, str]
) -> None:
    add_backtest_task(redis_client, "kept", source("gap_up"), ["AAPL"], "2011-01-01", "2011-12-31")
    refused = run_worker(worker_env)
    assert refused.returncode == 2, refused.stderr
    assert "refusing to run tasks" in refused.stderr and "landlock" in refused.stderr
    assert redis_client.llen("strategy_queue") == 1
    assert (get_task_result(redis_client, "kept") or {}).get("status") == "queued"

    accepted = run_worker(worker_env, "--insecure-no-sandbox")
    assert accepted.returncode == 0, accepted.stderr
    assert "RUNNING WITHOUT THE SANDBOX" in accepted.stderr
    result = wait_for_result(redis_client, "kept", timeout_s=5)
    assert result is not None and result["status"] == "completed"
