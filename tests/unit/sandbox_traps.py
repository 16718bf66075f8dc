"""Traps for escape attempts: a canary file, a TCP listener, a held socket, secrets in the env."""

from __future__ import annotations

import ctypes
import os
import resource
import secrets
import select
import socket
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from strategyq.sandbox import warm_up
from tests.unit.sandbox_corpus import Case


@dataclass
class Victim:
    """Another process of the same user, and what a child must not change about it."""

    process: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.process.pid

    def state(self) -> dict[str, object]:
        pid = self.pid
        return {
            "alive": self.process.poll() is None,
            "nice": os.getpriority(os.PRIO_PROCESS, pid),
            "policy": os.sched_getscheduler(pid),
            "affinity": sorted(os.sched_getaffinity(pid)),
            "ioprio": _LIBC.syscall(252, 1, pid),  # ioprio_get(IOPRIO_WHO_PROCESS, pid)
            "nofile": resource.prlimit(pid, resource.RLIMIT_NOFILE),
        }


@dataclass
class Traps:
    canary: Path
    canary_secret: str
    canary_mode: int
    marker: Path
    listener: socket.socket
    port: int
    held_server_side: socket.socket
    env_secret: str
    victim: Victim
    victim_state: dict[str, object]


_LIBC = ctypes.CDLL(None, use_errno=True)
XATTR = "user.strategyq"

WARM_WORKER = pytest.mark.xdist_group("sandbox-warm-worker")
"""The modules whose tests fork sandbox children of the test process (``sandbox.run``) or
plant traps: one xdist worker runs them all, so one worker pays for :func:`warm_up` (its
optional libraries, ~2.3 CPU-s) instead of one per module. Nothing else is shared: each
module keeps its own fixtures, and every run is a fresh child, as in any worker."""


@pytest.fixture(scope="module")
def warmed() -> None:
    warm_up()


@pytest.fixture(scope="module")
def victim() -> Iterator[Victim]:
    process = subprocess.Popen(
        [sys.executable, "-c", "import time\nwhile True: time.sleep(1)"],
        stdin=subprocess.DEVNULL,
    )
    try:
        yield Victim(process)
    finally:
        process.kill()
        process.wait()


@pytest.fixture
def traps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, warmed: None, victim: Victim
) -> Iterator[Traps]:
    canary_secret = "canary-" + secrets.token_hex(16)
    canary = tmp_path / "canary.txt"
    canary.write_text(canary_secret)
    os.setxattr(canary, XATTR, canary_secret.encode())
    env_secret = "redis-" + secrets.token_hex(16)
    monkeypatch.setenv("REDIS_PASSWORD", env_secret)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", env_secret)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    # A connection the parent holds open, like a worker's Redis socket.
    held_server = socket.socket()
    held_server.bind(("127.0.0.1", 0))
    held_server.listen(1)
    held_client = socket.create_connection(held_server.getsockname())
    held_server_side, _ = held_server.accept()
    held_server_side.setblocking(False)
    try:
        yield Traps(
            canary=canary,
            canary_secret=canary_secret,
            canary_mode=stat.S_IMODE(canary.stat().st_mode),
            marker=tmp_path / "marker",
            listener=listener,
            port=listener.getsockname()[1],
            held_server_side=held_server_side,
            env_secret=env_secret,
            victim=victim,
            victim_state=victim.state(),
        )
    finally:
        for sock in (listener, held_server, held_client, held_server_side):
            sock.close()


def prepare(case: Case, traps: Traps) -> str:
    return (
        case.code.replace("CANARYDIR", str(traps.canary.parent))
        .replace("CANARY", str(traps.canary))
        .replace("MARKER", str(traps.marker))
        .replace("PORT", str(traps.port))
        .replace("VICTIM", str(traps.victim.pid))
    )


def assert_no_side_effects(traps: Traps, text: str) -> None:
    assert "'denied': False" not in text and '"denied":false' not in text, text
    assert traps.canary_secret not in text
    assert traps.env_secret not in text
    assert not traps.marker.exists(), "a file was created outside the sandbox"
    assert traps.canary.read_text() == traps.canary_secret
    assert stat.S_IMODE(traps.canary.stat().st_mode) == traps.canary_mode
    readable, _, _ = select.select([traps.listener], [], [], 0)
    assert not readable, "the TCP listener received a connection"
    with pytest.raises(BlockingIOError):
        traps.held_server_side.recv(1024)
    assert os.listxattr(traps.canary) == [XATTR]
    assert os.getxattr(traps.canary, XATTR) == traps.canary_secret.encode()
    assert traps.victim.state() == traps.victim_state, "another process was changed"
