"""A live ``strategyq serve`` subprocess (and a real worker) for the API and browser tests."""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from strategyq.settings import SANDBOX_LIBRARIES
from tests import warm_cli
from tests.conftest import free_port
from tests.integration.browser import SIZES, OpenPage
from tests.integration.conftest import WorkerProcess, suite_env

GAP_UP = (Path(__file__).resolve().parents[3] / "src/strategyq/examples/gap_up.py").read_text()


class PortTaken(AssertionError):
    """The API's port was taken between its choice and the server's bind."""


class ServeProcess:
    """``strategyq serve`` as a real subprocess on a free loopback port."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        # The API checks a strategy against the shipped library list, as check_strategy()
        # does in this process. The workers beside it keep the lean sandbox the suite's
        # timings give them: no test here runs a library strategy, and a fork server that
        # preloads every library costs several seconds of CPU at each worker's start.
        self.env = {**env, "STRATEGYQ_SANDBOX_LIBRARIES": ",".join(SANDBOX_LIBRARIES)}
        self.port = free_port()
        self.args = args
        self.proc: Any = None  # subprocess.Popen or warm_cli.WarmProcess
        self.output: list[str] = []
        self._pump_thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServeProcess:
        for attempt in range(5):
            try:
                return self._start()
            except PortTaken:
                # Parallel workers (and other suites on the machine) pick free ports at
                # the same time: another free port, a few times.
                if attempt == 4:
                    raise
                self._join_pump()
                self.output = []
                self.port = free_port()
        raise AssertionError("unreachable")

    def _start(self) -> ServeProcess:
        self.proc = warm_cli.popen(
            ["serve", "--port", str(self.port), *self.args],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._pump_thread = threading.Thread(target=self._pump, daemon=True)
        self._pump_thread.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self._join_pump()
                output = "".join(self.output)
                if "address already in use" in output:
                    raise PortTaken(output)
                raise AssertionError("strategyq serve exited:\n" + output)
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError("strategyq serve did not become ready:\n" + "".join(self.output))

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        with self.proc.stdout:
            for line in self.proc.stdout:
                self.output.append(line)

    def _join_pump(self) -> None:
        if self._pump_thread is not None:
            self._pump_thread.join(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._join_pump()


def api_env(redis_url: str, market_home: Path, **extra: str) -> dict[str, str]:
    # Every worker of these tests reaps, and a reaper applies its own limit: with one
    # attempt, whichever worker reaps a crashed run dead-letters it.
    return suite_env(redis_url, market_home, STRATEGYQ_MAX_ATTEMPTS="1", **extra)


@pytest.fixture(scope="session")
def module_env(redis_url: str, market_home: Path) -> dict[str, str]:
    """The environment of the API and worker processes (the same for every module: a test
    that needs only this, not the module's live API or worker, may run on any xdist
    worker)."""
    return api_env(redis_url, market_home)


@pytest.fixture(scope="module")
def serve(module_env: dict[str, str]) -> Iterator[ServeProcess]:
    """A live API on the test server, without tokens (loopback bind)."""
    proc = ServeProcess(module_env).start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def worker(module_env: dict[str, str]) -> Iterator[WorkerProcess]:
    """One real worker for the module (its heartbeat re-registers it after a flush)."""
    proc = WorkerProcess(module_env, "api-worker").start()
    proc.wait_for_log("started")
    yield proc
    proc.stop()


@pytest.fixture
def http(serve: ServeProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=serve.url, timeout=60) as client:
        yield client


def backtest_body(task_id: str | None = None, **args: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "task_type": "backtest",
        "args": {
            "strategy_code": GAP_UP,
            "symbols": ["AAPL", "MSFT"],
            "start_date": "2010-01-01T00:00:00Z",
            "end_date": "2012-12-31T23:59:59Z",
            **args,
        },
    }
    if task_id is not None:
        body["task_id"] = task_id
    return body


@pytest.fixture
def page(open_page: OpenPage, serve: ServeProcess, tmp_path: Path) -> Any:
    """A page on the module's API, screenshotted when its test fails."""
    page = open_page(serve.url, viewport={"width": 1280, "height": 900})
    page.screenshots = tmp_path  # where each test saves its steps
    return page


@pytest.fixture(params=list(SIZES))
def sized(
    request: pytest.FixtureRequest, open_page: OpenPage, serve: ServeProcess, tmp_path: Path
) -> Any:
    """A page at one of the two sizes, screenshotted when its test fails."""
    page = open_page(serve.url, viewport=SIZES[request.param])
    page.size = request.param
    page.shots = tmp_path
    return page
