"""``strategyq wait`` as a person sees it: a progress bar with the time left, and Ctrl-C."""

from __future__ import annotations

import signal
import subprocess

import orjson
import redis

from strategyq import add_backtest_task
from strategyq.examples import source
from tests import warm_cli
from tests.integration.conftest import wait_until


def _blocked_in_wait(redis_client: redis.Redis) -> bool:
    # The CLI waits with a blocking pop on the task's completion list (on this test's
    # database: a server shared by parallel test workers has other clients blocked).
    db = str(redis_client.connection_pool.connection_kwargs.get("db", 0))
    return any(
        c.get("cmd") == "blpop" and str(c.get("db")) == db for c in redis_client.client_list()
    )


def test_ctrl_c_while_waiting_says_the_task_keeps_running_and_how_to_cancel_it(
    redis_client: redis.Redis, worker_env: dict[str, str]
) -> None:
    add_backtest_task(redis_client, "waited", source("gap_up"), ["AAPL"], "2011-01-01",
                      "2011-12-31")  # fmt: skip
    proc = warm_cli.popen(
        ["wait", "waited", "--timeout", "120"],
        env=worker_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_until(lambda: _blocked_in_wait(redis_client), timeout_s=60)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        # Closed here even when the test fails: a pipe left to the collector would fail
        # whichever later test it is collected in (ResourceWarning is an error).
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()
    assert proc.returncode == 130, (out, err)
    assert "stopped waiting; task waited keeps running" in err
    assert "strategyq cancel waited" in err and "strategyq wait waited" in err
    assert "Traceback" not in err
    # Nothing was cancelled: the task is still queued.
    assert orjson.loads(redis_client.get("task_result:waited"))["status"] == "queued"


def test_a_running_sweep_shows_a_bar_of_combinations_with_the_time_left(
    redis_client: redis.Redis, worker_env: dict[str, str]
) -> None:
    running = {
        "status": "running",
        "updated_at": "2024-01-01T00:00:00Z",
        "data": {"stage": "running_chunks", "progress": {"done": 25, "total": 100}},
    }
    redis_client.set("task_result:sweeping", orjson.dumps(running))
    done = warm_cli.run(
        ["wait", "sweeping", "--timeout", "2"],
        env={**worker_env, "FORCE_COLOR": "1", "COLUMNS": "160"},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert "25/100" in done.stderr and "running · running the combinations" in done.stderr
    assert "elapsed" in done.stderr and "left" in done.stderr
    assert "━" in done.stderr  # the bar itself
