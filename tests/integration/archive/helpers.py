"""Archive test helpers: runs written to Redis as a terminal write leaves them, a real
``strategyq archive`` process, and a TCP proxy that can cut the archive database off."""

from __future__ import annotations

import contextlib
import os
import select
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import redis

from strategyq.queue import keys
from tests import warm_cli
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[3]


def put_runs(client: redis.Redis, ids: list[str], *, sharpe: float = 1.0) -> None:
    """Leave ``ids`` in Redis as the terminal-write scripts do while the archive is on: the
    result record, the task message, and a feed entry (and the recent index)."""
    now = int(time.time() * 1000)
    pipe = client.pipeline(transaction=False)
    for i, task_id in enumerate(ids):
        task = {"task_id": task_id, "task_type": "backtest",
                "args": {"strategy_code": "def s(df):\n    return []\n", "symbols": ["AAPL"],
                         "start_date": "2010-01-01", "end_date": "2010-12-31",
                         "name": "bulk"}}  # fmt: skip
        result = {"status": "completed", "updated_at": "2024-01-01T00:00:00Z",
                  "data": {"execution_mode": "backtest", "task_id": task_id,
                           "performance_metrics": {"sharpe_ratio": sharpe + i / 1000}}}  # fmt: skip
        pipe.set(keys.result(task_id), orjson.dumps(result), ex=3600)
        pipe.set(keys.task(task_id), orjson.dumps(task), ex=3600)
        pipe.xadd(keys.ARCHIVE_FEED, {"id": task_id, "status": "completed", "type": "backtest",
                                      "ms": now + i})  # fmt: skip
        pipe.zadd(keys.RECENT, {task_id: now + i})
    pipe.execute()


class ArchiverProcess:
    """``strategyq archive`` as a real subprocess."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.env = env
        self.args = args
        self.proc: Any = None  # subprocess.Popen or warm_cli.WarmProcess
        self.output: list[str] = []
        self._pump: threading.Thread | None = None

    def start(self) -> ArchiverProcess:
        self.proc = warm_cli.popen(
            ["archive", "--metrics-port", "0", *self.args],
            cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        self._pump = threading.Thread(target=self._read, daemon=True)
        self._pump.start()
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        with self.proc.stdout:
            for line in self.proc.stdout:
                self.output.append(line)

    @property
    def text(self) -> str:
        return "".join(self.output)

    def port(self, timeout_s: float = 30) -> int:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in self.output:
                if "serving /metrics, /healthz and /readyz on " in line:
                    return int(line.rsplit(":", 1)[1])
            time.sleep(0.05)
        raise AssertionError("no metrics port in:\n" + self.text)

    def wait(self, timeout_s: float = 120) -> int:
        assert self.proc is not None
        code = self.proc.wait(timeout_s)
        if self._pump is not None:
            self._pump.join(10)
        return code

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()  # SIGKILL, to this process only
            self.proc.wait(10)
        if self._pump is not None:
            self._pump.join(10)

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.terminate()
        return self.wait(30)


def archive_env(base: dict[str, str], url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "STRATEGYQ_"))}
    env.update({k: v for k, v in base.items() if k.startswith(("REDIS_", "STRATEGYQ_"))})
    env.update(STRATEGYQ_ARCHIVE_URL=url, **extra)
    return env


class Proxy:
    """A TCP proxy to ``target`` that can be switched off (connections cut, new ones refused)
    and on again: the archive database going down and coming back, as the archiver sees it."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._accepting = threading.Event()
        self._accepting.set()

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        listener.settimeout(0.1)  # the accept loop sees down() within 0.1 s
        self._listener = listener
        self._stop.clear()
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def down(self) -> None:
        self._stop.set()
        if self._listener is not None:
            self._accepting.wait(5)
            self._listener.close()
            self._listener = None
        with self._lock:
            for a, b in self._pairs:
                for s in (a, b):
                    with contextlib.suppress(OSError):
                        s.shutdown(socket.SHUT_RDWR)
                    s.close()
            self._pairs.clear()

    def _accept(self, listener: socket.socket) -> None:
        self._accepting.clear()
        try:
            while not self._stop.is_set():
                try:
                    client, _ = listener.accept()
                except TimeoutError:
                    continue
                except OSError:
                    return
                client.settimeout(None)
                self._connect(client)
        finally:
            self._accepting.set()

    def _connect(self, client: socket.socket) -> None:
        server = socket.create_connection(self.target)
        with self._lock:
            self._pairs.append((client, server))
        threading.Thread(target=self._pipe, args=(client, server), daemon=True).start()

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while True:
                ready, _, _ = select.select([a, b], [], [], 0.5)
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    (b if s is a else a).sendall(data)
        except (OSError, ValueError):
            return


def wait_for(predicate: Any, timeout_s: float = 60, interval_s: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"condition not met within {timeout_s}s")
