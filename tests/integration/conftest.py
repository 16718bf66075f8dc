"""Fixtures for the end-to-end tests: a market store, worker settings, worker processes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import pytest
import redis

from strategyq.data import load_sample
from strategyq.executor.client import ExecutorProcess, RunOutcome
from strategyq.executor.inprocess import InProcessExecutor
from strategyq.executor.interface import Executor, ExecutorFactory
from strategyq.executor.main import SandboxHost
from strategyq.protocol.results import Stage
from strategyq.settings import Settings
from strategyq.worker import Worker
from tests import warm_cli
from tests.integration.browser import (  # noqa: F401  (the browser tests' fixtures and hook)
    chromium,
    open_page,
    pytest_runtest_makereport,
    shared_chromium,
)
from tests.integration.pg import pg_url  # noqa: F401  (a fixture for the PostgreSQL tests)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def market_home() -> Iterator[Path]:
    """A STRATEGYQ_HOME holding the sample data (loaded once per session)."""
    home = Path(tempfile.mkdtemp(prefix="strategyq-test-home-"))
    load_sample(home / "data")
    yield home
    shutil.rmtree(home, ignore_errors=True)


TEST_TIMINGS = {
    # The liveness settings of every worker the tests start, shorter than the shipped
    # defaults (heartbeat every 2 s, dead after 10 s, reaper every 3 s, 25 s of grace) so
    # that a crash is noticed and recovered within seconds. The same code paths run: a
    # heartbeat key with a TTL, a reaper taking its lock and requeueing a dead worker's
    # list. The timeout stays 6 heartbeats long, so a worker starved of CPU on a loaded
    # machine is not taken for dead. test_recovery.py runs the shipped defaults.
    "STRATEGYQ_HEARTBEAT_TIMEOUT": "3",
    "STRATEGYQ_HEARTBEAT_INTERVAL": "0.5",
    "STRATEGYQ_REAPER_INTERVAL": "0.5",
    # Time a SIGTERMed worker gives its task before requeueing it; the tests that test
    # the requeue set their own, shorter one.
    "STRATEGYQ_GRACE_PERIOD": "10",
    # The workers here run no library strategy (the sandbox tests fork both servers'
    # children): only the lean fork server starts, so a worker is ready in a fraction
    # of the time, which the crash-recovery bounds count on a loaded machine.
    "STRATEGYQ_SANDBOX_LIBRARIES": "none",
}


def suite_env(redis_url: str, home: Path, **extra: str) -> dict[str, str]:
    """This process's environment without REDIS_*/STRATEGYQ_*, pointed at the test server
    and store, with the tests' timings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "STRATEGYQ_"))}
    env.update(REDIS_URL=redis_url, STRATEGYQ_HOME=str(home))
    env.update(TEST_TIMINGS)
    env.update(extra)
    return env


@pytest.fixture
def worker_env(redis_url: str, market_home: Path) -> dict[str, str]:
    """The environment of a worker process pointed at the test server and store."""
    return suite_env(redis_url, market_home)


@pytest.fixture(scope="module")
def module_worker_env(redis_url: str, market_home: Path) -> dict[str, str]:
    """``worker_env`` for the module-scoped workers (the same values)."""
    return suite_env(redis_url, market_home)


@pytest.fixture
def settings(worker_env: dict[str, str]) -> Settings:
    return Settings.from_env(worker_env)


@pytest.fixture(scope="session")
def sandbox_host(market_home: Path) -> Iterator[SandboxHost]:
    """One warm sandbox host shared by the in-process executors of the session's tests."""
    # The tests on it run no library strategy: only the lean fork server starts.
    env = {"STRATEGYQ_HOME": str(market_home), "STRATEGYQ_SANDBOX_LIBRARIES": "none"}
    host = SandboxHost.start(Settings.from_env(env))
    yield host
    host.close()


def in_process(host: SandboxHost) -> ExecutorFactory:
    """Executors inside the test's process, on ``host``: tests of the worker's own logic."""
    return lambda conf: InProcessExecutor(conf, host)


def run_burst(
    settings: Settings, *, executor_factory: ExecutorFactory | None = None, **changes: Any
) -> Worker:
    """Run an in-process worker in burst mode until the queue is empty (its executors are
    processes unless ``executor_factory`` says otherwise)."""
    conf = replace(settings, **changes) if changes else settings
    if executor_factory is None:
        worker = Worker(conf, burst=True, handle_signals=False)
    else:
        worker = Worker(conf, burst=True, handle_signals=False, executor_factory=executor_factory)
    assert worker.run() == 0
    return worker


class KeptExecutor:
    """One executor process (with its sandbox host and fork server) kept across a module's
    burst workers, as a long-running worker keeps its executors across tasks: for the
    end-to-end tests, which each need the real chain but not a chain of their own.

    Start it in a module-scoped fixture, from the test's main thread: an executor dies
    with the thread that spawned it. A burst worker given it as ``executor_factory``
    borrows it for each slot; the worker's close leaves it running, and one the worker
    killed (a cancel past its grace, a hang) is replaced by a fresh one here.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.process = ExecutorProcess(settings)
        self.process.start()

    def __call__(self, conf: Settings) -> Executor:
        # The data cache's default size follows the memory free when settings are read,
        # so two reads differ there; the size changes no result.
        same_cache = replace(conf, data_cache_mb=self.settings.data_cache_mb)
        if same_cache.for_child_process() != self.settings.for_child_process():
            raise AssertionError(
                "a kept executor runs with the settings it started with; start a burst "
                "worker whose settings differ without it (run_burst's default executors)"
            )
        if not self.process.alive():
            self.process.close()
            self.process = ExecutorProcess(self.settings)
            self.process.start()
        return _Borrowed(self.process)

    def close(self) -> None:
        self.process.close()


class _Borrowed:
    """The worker's handle on a kept executor process: everything but closing it."""

    def __init__(self, process: ExecutorProcess) -> None:
        self.process = process
        self.layers = process.layers

    def spawn(self) -> None:
        """Already started."""

    def wait_ready(self) -> dict[str, bool]:
        return self.layers

    def start(self) -> dict[str, bool]:
        return self.layers

    def run(
        self, raw: bytes, on_stage: Callable[[Stage], None], *, deadline_s: float | None = None
    ) -> RunOutcome:
        return self.process.run(raw, on_stage, deadline_s=deadline_s)

    def cancel(self) -> None:
        self.process.cancel()

    def kill(self) -> None:
        self.process.kill()

    def alive(self) -> bool:
        return self.process.alive()

    def close(self, timeout_s: float = 5.0) -> None:
        """Left running for the module's next worker (KeptExecutor.close stops it)."""


class Burst(Protocol):
    """The ``burst`` fixture: ``run_burst`` with executors in the test's process."""

    def __call__(self, settings: Settings, **changes: Any) -> Worker: ...


@pytest.fixture
def burst(sandbox_host: SandboxHost) -> Burst:
    """``run_burst`` whose executors run in this process on the session's warm sandbox host:
    for tests of the worker's and the queue's own logic, which a real executor chain per
    call would only make slower (test_e2e.py and the crash tests run the processes)."""

    def run(settings: Settings, **changes: Any) -> Worker:
        return run_burst(settings, executor_factory=in_process(sandbox_host), **changes)

    return run


class WorkerProcess:
    """``strategyq worker`` as a real subprocess."""

    def __init__(self, env: dict[str, str], worker_id: str, *args: str) -> None:
        self.env = {**env, "STRATEGYQ_WORKER_ID": worker_id}
        self.worker_id = worker_id
        self.args = args
        self.proc: Any = None  # subprocess.Popen or warm_cli.WarmProcess
        self.output: list[str] = []
        # Notified at each line and at end of output: wait_for_log wakes on it, no polling.
        self._lines = threading.Condition()
        self._ended = False
        self._pump_thread: threading.Thread | None = None

    def start(self) -> WorkerProcess:
        streams: dict[str, Any] = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT}
        if any(k.startswith("STRATEGYQ_FAULT_") for k in self.env):
            # Faults are injected by a test-only worker, never by the production one.
            argv = [sys.executable, "-m", "tests.fault_worker", *self.args]
            self.proc = subprocess.Popen(argv, cwd=ROOT, env=self.env, text=True, **streams)
        else:
            args = ["worker", "--metrics-port", "0", *self.args]
            self.proc = warm_cli.popen(args, cwd=ROOT, env=self.env, text=True, **streams)
        self._pump_thread = threading.Thread(target=self._pump, daemon=True)
        self._pump_thread.start()
        return self

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        with self.proc.stdout:
            for line in self.proc.stdout:
                with self._lines:
                    self.output.append(line)
                    self._lines.notify_all()
        with self._lines:
            self._ended = True
            self._lines.notify_all()

    def _join_pump(self) -> None:
        if self._pump_thread is not None:
            self._pump_thread.join(10)

    def wait_for_log(self, text: str, timeout_s: float = 120.0) -> None:
        """Wait until a line of the worker's output holds ``text`` (woken at each line)."""
        seen = 0
        deadline = time.monotonic() + timeout_s
        with self._lines:
            while True:
                if any(text in line for line in self.output[seen:]):
                    return
                seen = len(self.output)
                remaining = deadline - time.monotonic()
                exited = self.proc is not None and self.proc.poll() is not None
                if self._ended or exited or remaining <= 0:
                    break
                # The pipe may stay open after the worker died (its children hold it):
                # look at the process again at least every half second.
                self._lines.wait(min(remaining, 0.5))
        if self._pump_thread is not None:
            self._pump_thread.join(1)  # the last lines of a worker that exited
        if any(text in line for line in self.output):
            return
        raise AssertionError(f"{text!r} not in worker output:\n{''.join(self.output)}")

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def wait(self, timeout_s: float = 60.0) -> int:
        assert self.proc is not None
        code = self.proc.wait(timeout_s)
        self._join_pump()
        return code

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self._join_pump()


class SpawnWorker(Protocol):
    """The ``spawn_worker`` fixture: start a worker process (stopped after the test)."""

    def __call__(
        self, worker_id: str = "w1", *args: str, env: dict[str, str] | None = None
    ) -> WorkerProcess: ...


@pytest.fixture
def spawn_worker(worker_env: dict[str, str]) -> Iterator[SpawnWorker]:
    started: list[WorkerProcess] = []

    def spawn(
        worker_id: str = "w1", *args: str, env: dict[str, str] | None = None
    ) -> WorkerProcess:
        proc = WorkerProcess({**worker_env, **(env or {})}, worker_id, *args).start()
        started.append(proc)
        return proc

    yield spawn
    for proc in started:
        proc.stop()


def wait_until(predicate: Any, timeout_s: float = 30.0, interval_s: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"condition not met within {timeout_s}s")


def wait_for_status(
    client: redis.Redis, task_id: str, status: str, timeout_s: float = 30.0
) -> dict[str, Any]:
    """Block on the task's terminal write (the producer API's wait, no polling) and check
    that it ended with ``status``; the result."""
    from strategyq import wait_for_result

    found = wait_for_result(client, task_id, timeout_s=timeout_s)
    assert found is not None, f"{task_id} did not end within {timeout_s}s"
    assert found["status"] == status, found
    return found


def raw_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)
