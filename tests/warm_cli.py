"""``strategyq ARGS`` as a real process of its own, forked from a warm launcher.

:func:`popen` and :func:`run` take the arguments of ``subprocess.Popen`` and
``subprocess.run`` that the tests use, for a ``strategyq`` command, and answer the same
way: a process with its own pid (signal it, wait for it), pipes, exit code. The process
is forked by :mod:`tests.warm_launcher`, one per test worker, which has imported the
command line already; see there for what differs from ``python -m strategyq`` (only the
interpreter's start). ``STRATEGYQ_TEST_EXEC=1`` runs every command as
``python -m strategyq`` instead.

Tests of the executable itself (its start-up, the README and the demo as a user types
them) run ``python -m strategyq`` and stay there.
"""

from __future__ import annotations

import contextlib
import os
import select
import selectors
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
EXEC = os.environ.get("STRATEGYQ_TEST_EXEC") == "1"


class _Launcher:
    """The test worker's launcher process, started on first use."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._control: socket.socket | None = None
        self._process: subprocess.Popen[bytes] | None = None

    def _start(self) -> socket.socket:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.warm_launcher", str(theirs.fileno())],
            pass_fds=[theirs.fileno()],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
        )
        theirs.close()
        ours.settimeout(120)
        if ours.recv(16) != b"ready":
            raise RuntimeError("the warm launcher did not start (its error is on stderr above)")
        ours.settimeout(None)
        return ours

    def spawn(self, request: dict[str, Any], fds: Sequence[int]) -> int:
        with self._lock:
            if self._process is not None and self._process.poll() is not None:
                self.close_locked()  # it died: a new one takes over
            if self._control is None:
                self._control = self._start()
            socket.send_fds(self._control, [orjson.dumps(request)], list(fds))
            (pid,) = struct.unpack("i", self._control.recv(4))
            return int(pid)

    def close(self) -> None:
        with self._lock:
            self.close_locked()

    def close_locked(self) -> None:
        if self._control is not None:
            self._control.close()
            self._control = None
        if self._process is not None:
            self._process.wait(10)
            self._process = None


LAUNCHER = _Launcher()


def command(args: Sequence[str]) -> list[str]:
    """The argument vector of ``python -m strategyq ARGS``."""
    return [sys.executable, "-m", "strategyq", *args]


def _fd(spec: Any, default: int, theirs: list[int], ours: list[int]) -> tuple[int, int | None]:
    """(the child's descriptor, our end of a pipe or None) for a Popen stream argument;
    descriptors opened here go to ``theirs`` (the child's ends) and ``ours``."""
    if spec is None:
        return default, None
    if spec == subprocess.PIPE:
        read_end, write_end = os.pipe()
        child, our = (read_end, write_end) if default == 0 else (write_end, read_end)
        theirs.append(child)
        ours.append(our)
        return child, our
    if spec == subprocess.DEVNULL:
        fd = os.open(os.devnull, os.O_RDWR)
        theirs.append(fd)
        return fd, None
    if isinstance(spec, int):
        return spec, None
    return spec.fileno(), None


class WarmProcess:
    """A ``strategyq`` command forked by the launcher, with ``subprocess.Popen``'s interface."""

    def __init__(
        self,
        args: Sequence[str],
        *,
        env: dict[str, str] | None = None,
        cwd: str | Path | None = None,
        stdin: Any = None,
        stdout: Any = None,
        stderr: Any = None,
        text: bool = False,
        start_new_session: bool = False,
    ) -> None:
        self.args = command(args)
        self.returncode: int | None = None
        self._text = text
        # Once sent, the launcher holds its own copies of the child's ends: ours are closed.
        theirs: list[int] = []
        ours: list[int] = []
        try:
            child_in, our_in = _fd(stdin, 0, theirs, ours)
            child_out, our_out = _fd(stdout, 1, theirs, ours)
            if stderr == subprocess.STDOUT:
                child_err, our_err = child_out, None
            else:
                child_err, our_err = _fd(stderr, 2, theirs, ours)
            status_r, status_w = os.pipe()
            theirs.append(status_w)
            ours.append(status_r)
            request = {
                "args": list(args),
                "env": dict(os.environ if env is None else env),
                "cwd": str(cwd if cwd is not None else os.getcwd()),
                "new_session": start_new_session,
            }
            self.pid = LAUNCHER.spawn(request, [child_in, child_out, child_err, status_w])
        except BaseException:
            for fd in ours:
                os.close(fd)
            raise
        finally:
            for fd in theirs:
                os.close(fd)
        self._status = status_r
        self.stdin = self._wrap(our_in, "w")
        self.stdout = self._wrap(our_out, "r")
        self.stderr = self._wrap(our_err, "r")

    def _wrap(self, fd: int | None, mode: str) -> IO[Any] | None:
        if fd is None:
            return None
        if self._text:
            return open(fd, mode, encoding="utf-8", errors="strict", closefd=True)
        return open(fd, mode + "b", buffering=-1 if mode == "r" else 0, closefd=True)

    def _collect(self, timeout: float | None) -> bool:
        if self.returncode is not None:
            return True
        if not select.select([self._status], [], [], timeout)[0]:
            return False
        data = os.read(self._status, 4)
        os.close(self._status)
        # Nothing written means the launcher died before the child did: report it killed.
        self.returncode = struct.unpack("i", data)[0] if len(data) == 4 else -9
        return True

    def poll(self) -> int | None:
        self._collect(0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._collect(timeout):
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, signum: int) -> None:
        # As Popen: never signal a pid that may already belong to another process.
        if self.poll() is None:
            os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(15)

    def kill(self) -> None:
        self.send_signal(9)

    def communicate(self, input: Any = None, timeout: float | None = None) -> tuple[Any, Any]:
        deadline = None if timeout is None else time.monotonic() + timeout
        chunks: dict[int, list[bytes]] = {}
        with selectors.DefaultSelector() as sel:
            if self.stdin is not None:
                # As Popen: a child that exits without reading its input is not an error.
                with contextlib.suppress(BrokenPipeError):
                    if input:
                        data = input.encode() if isinstance(input, str) else input
                        raw = self.stdin.buffer if self._text else self.stdin  # type: ignore[attr-defined]
                        raw.write(data)
                    self.stdin.close()
            for stream in (self.stdout, self.stderr):
                if stream is not None:
                    sel.register(stream.fileno(), selectors.EVENT_READ)
                    chunks[stream.fileno()] = []
            while sel.get_map():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise subprocess.TimeoutExpired(self.args, timeout or 0)
                for key, _ in sel.select(left):
                    data = os.read(key.fd, 1 << 16)
                    if data:
                        chunks[key.fd].append(data)
                    else:
                        sel.unregister(key.fd)
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        self.wait(left)
        outputs = []
        for stream in (self.stdout, self.stderr):
            if stream is None:
                outputs.append(None)
                continue
            data = b"".join(chunks[stream.fileno()])
            stream.close()
            # As Popen's text mode: universal newlines (a progress bar's carriage returns).
            if self._text:
                outputs.append(data.decode().replace("\r\n", "\n").replace("\r", "\n"))
            else:
                outputs.append(data)
        return outputs[0], outputs[1]

    def __enter__(self) -> WarmProcess:
        return self

    def __exit__(self, *_: object) -> None:
        for stream in (self.stdin, self.stdout, self.stderr):
            if stream is not None and not stream.closed:
                stream.close()
        self.wait()


def popen(args: Sequence[str], **kwargs: Any) -> Any:
    """``strategyq ARGS`` started as ``subprocess.Popen([python, -m, strategyq, *ARGS], ...)``."""
    if EXEC:
        return subprocess.Popen(command(args), **kwargs)
    return WarmProcess(args, **kwargs)


def run(
    args: Sequence[str],
    *,
    input: str | bytes | None = None,
    capture_output: bool = False,
    timeout: float | None = None,
    check: bool = False,
    **kwargs: Any,
) -> subprocess.CompletedProcess[Any]:
    """``strategyq ARGS`` run as ``subprocess.run([python, -m, strategyq, *ARGS], ...)``."""
    if EXEC:
        return subprocess.run(command(args), input=input, capture_output=capture_output,
                              timeout=timeout, check=check, **kwargs)  # fmt: skip
    if capture_output:
        kwargs["stdout"] = kwargs["stderr"] = subprocess.PIPE
    if input is not None:
        kwargs["stdin"] = subprocess.PIPE
    with WarmProcess(args, **kwargs) as process:
        try:
            out, err = process.communicate(input, timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
    done = subprocess.CompletedProcess(process.args, process.wait(), out, err)
    if check:
        done.check_returncode()
    return done
