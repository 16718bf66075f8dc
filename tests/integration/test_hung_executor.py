"""Executors and sandbox hosts that hang (SIGSTOP, a hung volume) or die (SIGKILL) mid-task.

The worker enforces its own deadline on each run (the time limit plus
``STRATEGYQ_EXECUTOR_MARGIN``), kills a hung executor with its sandbox host,
and runs the task once more in a fresh executor; a second loss fails the task
with the reason.
"""

from __future__ import annotations

import contextlib
import signal

import psutil
import pytest
import redis

from strategyq import add_backtest_task, cancel_task, get_task_result
from strategyq.queue import keys
from tests.integration.conftest import SpawnWorker, WorkerProcess, wait_for_status, wait_until


def spin(seconds: float) -> str:
    return (
        "import datetime\n"
        "def spin(df):\n"
        f"    end = datetime.datetime.now() + datetime.timedelta(seconds={seconds})\n"
        "    while datetime.datetime.now() < end:\n"
        "        pass\n"
        "    return [{'ticker': 'AAPL', 'date': '2011-03-01'}]\n"
    )


def submit(client: redis.Redis, task_id: str, code: str) -> None:
    add_backtest_task(client, task_id, code, ["AAPL"], "2011-01-01", "2011-06-30")


def result(client: redis.Redis, task_id: str) -> dict[str, object]:
    return get_task_result(client, task_id) or {}


def stage(client: redis.Redis, task_id: str) -> object:
    return (result(client, task_id).get("data") or {}).get("stage")  # type: ignore[union-attr]


def _named(parent: psutil.Process, module: str) -> psutil.Process | None:
    for child in parent.children():
        try:
            if module in child.cmdline() and child.status() != psutil.STATUS_ZOMBIE:
                return child
        except psutil.NoSuchProcess:
            continue
    return None


def process_named(worker: WorkerProcess, module: str) -> psutil.Process | None:
    """The worker's executor, its sandbox host, or the child running the strategy
    (``strategyq.sandbox``, forked by one of the host's fork servers), or None when there
    is none."""
    assert worker.proc is not None
    executor = _named(psutil.Process(worker.proc.pid), "strategyq.executor")
    if executor is None or module == "strategyq.executor":
        return executor
    host = _named(executor, "strategyq.executor.sandbox_host")
    if host is None or module == "strategyq.executor.sandbox_host":
        return host
    for server in host.children():
        with contextlib.suppress(psutil.NoSuchProcess):
            if "strategyq.sandbox.zygote" in server.cmdline():
                child = _named(server, "strategyq.sandbox.zygote")
                if child is not None:
                    return child
    return None


def gone(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def running_in(worker: WorkerProcess, client: redis.Redis, task_id: str) -> psutil.Process:
    wait_until(lambda: stage(client, task_id) == "running_strategy", timeout_s=60)
    found = process_named(worker, "strategyq.executor")
    assert found is not None
    return found


FAST_DEADLINE = {"STRATEGYQ_TIME_LIMIT": "5", "STRATEGYQ_EXECUTOR_MARGIN": "2"}


@pytest.mark.slow
def test_a_stopped_executor_is_killed_at_the_deadline_and_the_task_rerun(
    redis_client: redis.Redis, spawn_worker: SpawnWorker
) -> None:
    worker = spawn_worker("hang-w1", env=FAST_DEADLINE)
    worker.wait_for_log("started")
    submit(redis_client, "hang-1", spin(1.0))
    target = running_in(worker, redis_client, "hang-1")
    target.send_signal(signal.SIGSTOP)
    wait_for_status(redis_client, "hang-1", "completed", timeout_s=60)
    wait_until(lambda: gone(target), timeout_s=10)
    worker.wait_for_log("running it once more in a fresh executor")
    assert redis_client.llen(keys.done("hang-1")) == 1
    # The slot works again: a later task starts and finishes.
    submit(redis_client, "hang-2", spin(0.1))
    wait_for_status(redis_client, "hang-2", "completed", timeout_s=60)


@pytest.mark.slow
def test_a_stopped_sandbox_host_is_killed_at_the_deadline_and_the_task_rerun(
    redis_client: redis.Redis, spawn_worker: SpawnWorker
) -> None:
    """A host that hangs (a market-data volume that stopped answering) between tasks: the
    next task's executor waits on it for ever unless the worker's deadline ends it."""
    worker = spawn_worker("hang-host", env=FAST_DEADLINE)
    worker.wait_for_log("started")
    host = wait_until(
        lambda: process_named(worker, "strategyq.executor.sandbox_host"), timeout_s=30
    )
    host.send_signal(signal.SIGSTOP)
    submit(redis_client, "hang-host-1", spin(0.5))
    wait_for_status(redis_client, "hang-host-1", "completed", timeout_s=60)
    wait_until(lambda: gone(host), timeout_s=10)
    worker.wait_for_log("running it once more in a fresh executor")
    assert redis_client.llen(keys.done("hang-host-1")) == 1


@pytest.mark.slow
def test_a_task_that_hangs_its_executor_twice_fails_with_the_reason(
    redis_client: redis.Redis, spawn_worker: SpawnWorker
) -> None:
    worker = spawn_worker("hang-w2", env=FAST_DEADLINE)
    worker.wait_for_log("started")
    submit(redis_client, "hang-twice", spin(1.5))
    first = running_in(worker, redis_client, "hang-twice")
    first.send_signal(signal.SIGSTOP)
    worker.wait_for_log("running it once more", timeout_s=60)

    def rerun_executor() -> psutil.Process | None:
        # The re-run is in its strategy once the fresh host has forked a child.
        found = process_named(worker, "strategyq.executor")
        child = process_named(worker, "strategyq.sandbox")
        return found if found is not None and found.pid != first.pid and child else None

    wait_until(rerun_executor, timeout_s=60).send_signal(signal.SIGSTOP)
    wait_for_status(redis_client, "hang-twice", "error", timeout_s=60)
    data = result(redis_client, "hang-twice")["data"]
    assert data["error_type"] == "timeout"  # type: ignore[index]
    assert "twice" in data["error"]  # type: ignore[index]
    assert "deadline" in data["error"]  # type: ignore[index]


@pytest.mark.slow
def test_a_killed_executor_reruns_the_task_once(
    redis_client: redis.Redis, spawn_worker: SpawnWorker
) -> None:
    worker = spawn_worker("kill-w1")
    worker.wait_for_log("started")
    submit(redis_client, "kill-1", spin(1.0))
    running_in(worker, redis_client, "kill-1").send_signal(signal.SIGKILL)
    wait_for_status(redis_client, "kill-1", "completed", timeout_s=60)
    worker.wait_for_log("killed by SIGKILL); running it once more")
    assert redis_client.llen(keys.done("kill-1")) == 1


@pytest.mark.slow
def test_an_executor_killed_twice_fails_the_task_with_the_reason(
    redis_client: redis.Redis, spawn_worker: SpawnWorker
) -> None:
    worker = spawn_worker("kill-w2")
    worker.wait_for_log("started")
    submit(redis_client, "kill-twice", spin(3.0))
    first = running_in(worker, redis_client, "kill-twice")
    first.send_signal(signal.SIGKILL)
    # Logged once the fresh executor is warm, just before the re-run is handed to it.
    worker.wait_for_log("running it once more in a fresh executor", timeout_s=60)

    def rerun_executor() -> psutil.Process | None:
        # The re-run is in its strategy once the fresh host has forked a child.
        found = process_named(worker, "strategyq.executor")
        child = process_named(worker, "strategyq.sandbox")
        return found if found is not None and found.pid != first.pid and child else None

    wait_until(rerun_executor, timeout_s=60).send_signal(signal.SIGKILL)
    wait_for_status(redis_client, "kill-twice", "error", timeout_s=60)
    data = result(redis_client, "kill-twice")["data"]
    assert data["error_type"] == "internal"  # type: ignore[index]
    assert "died twice" in data["error"]  # type: ignore[index]
    assert "SIGKILL" in data["error"]  # type: ignore[index]
    assert "out-of-memory" in data["error"]  # type: ignore[index]


@pytest.mark.slow
def test_cancel_reaches_a_task_whose_executor_is_stopped(
    redis_client: redis.Redis, spawn_worker: SpawnWorker
) -> None:
    worker = spawn_worker("hang-w3", env={"STRATEGYQ_EXECUTOR_MARGIN": "300"})
    worker.wait_for_log("started")
    submit(redis_client, "hang-cancel", spin(2.0))
    running_in(worker, redis_client, "hang-cancel").send_signal(signal.SIGSTOP)
    cancel_task(redis_client, "hang-cancel")
    wait_for_status(redis_client, "hang-cancel", "cancelled", timeout_s=30)
    # The slot works again.
    submit(redis_client, "hang-after", spin(0.1))
    wait_for_status(redis_client, "hang-after", "completed", timeout_s=60)


@pytest.mark.slow
def test_sigterm_with_a_stopped_executor_requeues_the_task_and_exits_0(
    redis_client: redis.Redis, spawn_worker: SpawnWorker
) -> None:
    worker = spawn_worker(
        "hang-w4", env={"STRATEGYQ_EXECUTOR_MARGIN": "300", "STRATEGYQ_GRACE_PERIOD": "2"}
    )
    worker.wait_for_log("started")
    submit(redis_client, "hang-term", spin(2.0))
    running_in(worker, redis_client, "hang-term").send_signal(signal.SIGSTOP)
    worker.signal(signal.SIGTERM)
    assert worker.wait(60) == 0
    assert redis_client.lrange("strategy_queue", 0, -1) != []
    assert result(redis_client, "hang-term").get("status") == "queued"
