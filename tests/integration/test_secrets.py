"""The processes that sandboxes are forked from hold no secret and no other task's data.

A strategy that escaped the policy could read its own memory (ctypes,
``as_strided``), and its memory is a copy of its parent's: the sandbox host.
So the test scans every readable page of a live executor and sandbox host —
and their environments and command lines — for the Redis password, and the
host for an earlier task's strategy source and result; the same scan must
find them where they do live (the worker, the executor), so the scan works.
"""

from __future__ import annotations

import re
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import redis

from strategyq import add_backtest_task, wait_for_result
from tests.conftest import free_port, valkey_binary
from tests.integration.conftest import WorkerProcess, wait_until


def memory_contains(pid: int, needle: bytes) -> bool:
    """Whether any readable mapping of ``pid`` contains ``needle`` (needs root or ptrace rights)."""
    maps = Path(f"/proc/{pid}/maps").read_text().splitlines()
    with open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        for line in maps:
            fields = line.split()
            if "r" not in fields[1] or (len(fields) > 5 and fields[5] in ("[vvar]", "[vsyscall]")):
                continue
            start, end = (int(x, 16) for x in fields[0].split("-"))
            try:
                mem.seek(start)
                chunk = mem.read(end - start)
            except OSError:
                continue
            if needle in chunk:
                return True
    return False


def children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


@pytest.mark.slow
def test_executors_hold_no_redis_password(market_home: Path) -> None:
    password = "pw-" + secrets.token_hex(16)
    directory = Path(tempfile.mkdtemp(prefix="strategyq-secret-"))
    port = free_port()
    server = subprocess.Popen(
        [valkey_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
         "--save", "", "--requirepass", password],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    worker = None
    try:
        client = redis.Redis(port=port, password=password, decode_responses=True)
        wait_until(lambda: _pings(client))
        env = {
            "PATH": "/usr/bin:/bin",
            "REDIS_HOST": "127.0.0.1",
            "REDIS_PORT": str(port),
            "REDIS_PASSWORD": password,
            "STRATEGYQ_HOME": str(market_home),
            "AWS_SECRET_ACCESS_KEY": password + "-aws",
        }
        worker = WorkerProcess(env, "secret-1").start()
        worker.wait_for_log("started: queue")
        marker = "tenant-" + secrets.token_hex(12)
        code = (
            "def s(df):\n"
            f"    return [{{'ticker': 'AAPL', 'date': '2011-01-03', 'm': '{marker}'}}]\n"
        )
        add_backtest_task(client, "s1", code, ["AAPL"], "2011-01-01", "2011-02-01")
        result = wait_for_result(client, "s1", timeout_s=30)
        assert result is not None and result["status"] == "completed"

        assert worker.proc is not None
        needle = password.encode()
        assert memory_contains(worker.proc.pid, needle), "the scan must find it in the worker"
        executors = [
            p for p in children(worker.proc.pid)
            if b"strategyq.executor" in Path(f"/proc/{p}/cmdline").read_bytes()
        ]  # fmt: skip
        assert executors
        hosts = [p for e in executors for p in children(e)]
        assert hosts, "every executor has a sandbox host"
        servers = [p for h in hosts for p in children(h)]
        assert servers, "every sandbox host has a fork server"
        for pid in executors + hosts + servers:
            assert needle not in Path(f"/proc/{pid}/environ").read_bytes()
            assert needle not in Path(f"/proc/{pid}/cmdline").read_bytes()
            assert not re.search(rb"REDIS_|AWS_", Path(f"/proc/{pid}/environ").read_bytes())
            assert not memory_contains(pid, needle), f"process {pid} holds the password"
        # The executor ran the engine on task s1's result; its sandbox host never saw it.
        assert any(memory_contains(pid, marker.encode()) for pid in executors)
        for pid in hosts + servers:
            assert not memory_contains(pid, marker.encode()), f"host {pid} holds task data"
        # The fork server, parent of every child, never held a path of the store.
        for pid in servers:
            assert not memory_contains(pid, str(market_home).encode()), f"{pid} names the store"
    finally:
        if worker is not None:
            worker.stop()
        server.terminate()
        server.wait(10)
        shutil.rmtree(directory, ignore_errors=True)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.ConnectionError:
        time.sleep(0.02)
        return False
