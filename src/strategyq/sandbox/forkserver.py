"""A fork server: sandbox children forked from a process that never sees a strategy or a result.

A child's memory is a copy of its parent's, and a strategy that escaped the
policy could read it. A parent that has run the engine for earlier tasks still
holds their code and results in freed memory, so children are not forked
from it. Instead, the fork server process holds only market data (and the
warm pandas/numpy): on request it loads a frame and forks a child, which
locks itself down and then waits for its source. The client (the executor)
passes the child's two pipe ends over a unix socket (``SCM_RIGHTS``): the
strategy's source reaches the child directly, and its answer goes straight
back to the client, never through the fork server.

Because a child locks down *before* it reads its source, the client can ask
for the next child ahead of time (a *spare*, for the same data and limits as
the task just run) while it computes the current result; a task that needs
the same frame then skips the fork and lock-down altogether. An unused spare
reads end of file and exits.

Messages are JSON, one per SEQPACKET datagram::

    client → server  {"id": n, "request": {...}, "limits": {...}, "sandboxed": b, "restricted": b}
                     with fds [source_read_end, result_write_end]
    server → client  {"id": n, "pid": int, "meta": {...}}
                     or {"id": n, "error": str, "error_type": str}
    server → client  {"exit": pid, "status": int, "cpu_s": float}   when a child is reaped
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import select
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from strategyq import errors
from strategyq.sandbox import checker, child
from strategyq.sandbox.lockdown import cpu_limit_s
from strategyq.sandbox.lockdown import plan as make_plan
from strategyq.sandbox.runner import collect
from strategyq.settings import SandboxLimits

log = logging.getLogger(__name__)

MAX_MESSAGE = 1 << 20


@functools.lru_cache(maxsize=32)
def checked_program(source: str) -> bytes:
    """Check ``source`` against the policy; the program its child runs (the compiled tree).

    Cached by source text: a strategy submitted again (a screen every minute, a
    parameter sweep over the same code) is parsed, checked and compiled once.
    A source that fails the check raises each time (errors are not cached).
    """
    report = checker.check(source)
    return child.encode_program(source, report.code, report.entry)


class HostGone(errors.SandboxUnavailable):
    """Raised when the fork server process is gone (killed, or out of memory)."""


Loader = Callable[[dict[str, Any]], tuple[Any, dict[str, Any]]]
"""Turns a data request into (frame, metadata); raises StrategyqError for bad requests."""


def _limits_json(limits: SandboxLimits) -> dict[str, Any]:
    return {
        "time_limit_s": limits.time_limit_s,
        "memory_mb": limits.memory_mb,
        "answer_max_bytes": limits.answer_max_bytes,
        "max_open_files": limits.max_open_files,
    }


# ============================================================================ server side


def serve(sock: socket.socket, load: Loader) -> None:
    """Answer fork requests until the client closes its end (or goes away)."""
    with contextlib.suppress(ConnectionResetError, BrokenPipeError):
        _serve(sock, load)


def _serve(sock: socket.socket, load: Loader) -> None:
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    children: dict[int, int] = {}  # pidfd -> pid
    try:
        while True:
            for fd, _events in poller.poll():
                if fd == sock.fileno():
                    message, fds, _flags, _addr = socket.recv_fds(sock, MAX_MESSAGE, 2)
                    if not message:
                        return
                    pid = _fork_one(sock, orjson.loads(message), fds, load)
                    if pid is not None:
                        pidfd = os.pidfd_open(pid)
                        children[pidfd] = pid
                        poller.register(pidfd, select.POLLIN)
                else:
                    pid = children.pop(fd)
                    poller.unregister(fd)
                    os.close(fd)
                    _, status, usage = os.wait4(pid, 0)
                    cpu_s = usage.ru_utime + usage.ru_stime
                    sock.send(orjson.dumps({"exit": pid, "status": status, "cpu_s": cpu_s}))
    finally:
        for pidfd in children:
            os.close(pidfd)


def _fork_one(
    sock: socket.socket, message: dict[str, Any], fds: list[int], load: Loader
) -> int | None:
    source_fd, result_fd = fds
    tag = message["id"]
    try:
        try:
            frame, meta = load(message["request"])
        except errors.StrategyqError as exc:
            reply = {"id": tag, "error": str(exc), "error_type": exc.error_type}
            sock.send(orjson.dumps(reply))
            return None
        limits = message["limits"]
        plan = make_plan(
            memory_mb=int(limits["memory_mb"]),
            time_limit_s=float(limits["time_limit_s"]),
            max_open_files=int(limits["max_open_files"]),
            sandboxed=bool(message["sandboxed"]),
        )
        restricted = bool(message["restricted"])
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child always leaves through os._exit
            child.main(
                plan, result_fd, None, None, None, frame, restricted=restricted, source_fd=source_fd
            )
        with contextlib.suppress(PermissionError, ProcessLookupError):
            os.setpgid(pid, pid)
        sock.send(orjson.dumps({"id": tag, "pid": pid, "meta": meta}))
        return pid
    finally:
        os.close(source_fd)
        os.close(result_fd)


# ============================================================================ client side


@dataclass
class _Child:
    """A child asked for (and maybe not yet confirmed by the server)."""

    tag: int
    key: bytes
    source_w: int
    result_r: int
    pid: int | None = None
    pidfd: int | None = None
    meta: dict[str, Any] | None = None

    def discard(self) -> None:
        """Close our ends: a waiting child reads end of file and exits."""
        for fd in (self.source_w, self.result_r, self.pidfd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.pidfd = None


class ForkClient:
    """The executor's side: ask for a child, feed it the source, collect its answer."""

    def __init__(self, sock: socket.socket, *, spares: bool = True) -> None:
        self.sock = sock
        self.spares = spares
        self._next_tag = 0
        self._replies: dict[int, dict[str, Any]] = {}
        self._exits: dict[int, tuple[int, float]] = {}
        self._spare: _Child | None = None

    # -- messages

    def _receive(self) -> None:
        """Read one message (blocking) and file it as a reply or an exit notice."""
        try:
            message = self.sock.recv(MAX_MESSAGE)
        except ConnectionResetError:
            message = b""
        if not message:
            raise HostGone("the sandbox host process exited; retry the task")
        value = orjson.loads(message)
        if "exit" in value:
            self._exits[int(value["exit"])] = (int(value["status"]), float(value["cpu_s"]))
        else:
            self._replies[int(value["id"])] = value

    def _reply(self, tag: int) -> dict[str, Any]:
        while tag not in self._replies:
            self._receive()
        return self._replies.pop(tag)

    def _wait_exit(self, pid: int) -> tuple[int, float]:
        while pid not in self._exits:
            self._receive()
        return self._exits.pop(pid)

    # -- children

    def _ask(self, key: bytes, message: dict[str, Any]) -> _Child:
        """Ask the server for a child (does not wait for the answer)."""
        self._next_tag += 1
        source_r, source_w = os.pipe()
        result_r, result_w = os.pipe()
        try:
            payload = orjson.dumps({**message, "id": self._next_tag})
            socket.send_fds(self.sock, [payload], [source_r, result_w])
        except BaseException as exc:
            for fd in (source_w, result_r):
                os.close(fd)
            if isinstance(exc, BrokenPipeError | ConnectionResetError):
                raise HostGone("the sandbox host process exited; retry the task") from None
            raise
        finally:
            os.close(source_r)
            os.close(result_w)
        return _Child(self._next_tag, key, source_w, result_r)

    def _confirm(self, c: _Child) -> None:
        """Wait for the server's answer about ``c``; raise the loader's error, if any."""
        if c.pid is not None:
            return
        reply = self._reply(c.tag)
        if "error" in reply:
            c.discard()
            raise _error(str(reply["error_type"]), str(reply["error"]))
        c.pid = int(reply["pid"])
        c.meta = dict(reply["meta"])
        # The child cannot exit (and be reaped) before it reads its source: safe to open now.
        c.pidfd = os.pidfd_open(c.pid)

    def close_spare(self) -> None:
        """Let go of the spare child, if any."""
        if self._spare is not None:
            spare, self._spare = self._spare, None
            with contextlib.suppress(errors.StrategyqError, OSError):
                self._confirm(spare)
            spare.discard()

    @staticmethod
    def _message(
        request: dict[str, Any], limits: SandboxLimits, check_policy: bool, insecure: bool
    ) -> tuple[bytes, dict[str, Any]]:
        message = {
            "request": request,
            "limits": _limits_json(limits),
            "sandboxed": not insecure,
            "restricted": check_policy,
        }
        return orjson.dumps(message, option=orjson.OPT_SORT_KEYS), message

    def prepare(
        self,
        request: dict[str, Any],
        limits: SandboxLimits,
        *,
        check_policy: bool = True,
        insecure_no_sandbox: bool = False,
    ) -> None:
        """Have a child for ``request`` start loading, forking and locking down now.

        The server loads the frame while the caller does other work (its own
        load, say); the next :meth:`run` with the same arguments uses that child.
        """
        key, message = self._message(request, limits, check_policy, insecure_no_sandbox)
        if self._spare is None or self._spare.key != key:
            self.close_spare()
            self._spare = self._ask(key, message)

    def run(
        self,
        source: str,
        request: dict[str, Any],
        limits: SandboxLimits,
        *,
        check_policy: bool = True,
        cancel_fd: int | None = None,
        insecure_no_sandbox: bool = False,
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """Run ``source`` on the frame the server loads for ``request``.

        Returns:
            (instances, the loader's metadata)

        Raises:
            The errors of :func:`strategyq.sandbox.run`, and the loader's own
            StrategyqError (e.g. DataError) for a bad request.
        """
        # A friendly error now, without running anything; the child runs the code
        # compiled here from the checked tree.
        program = (
            checked_program(source) if check_policy else child.encode_program(source, None, None)
        )
        if insecure_no_sandbox:
            log.warning("running a strategy WITHOUT Landlock and seccomp (insecure_no_sandbox)")
        key, message = self._message(request, limits, check_policy, insecure_no_sandbox)
        if self._spare is not None and self._spare.key == key:
            c, self._spare = self._spare, None
        else:
            self.close_spare()
            c = self._ask(key, message)
        self._confirm(c)
        assert c.pid is not None and c.pidfd is not None and c.meta is not None
        # Exit notices of earlier children (killed once they had answered) are not needed.
        self._exits = {pid: v for pid, v in self._exits.items() if pid == c.pid}
        started = time.monotonic()
        with contextlib.suppress(BrokenPipeError):
            view = memoryview(program)
            while view:
                view = view[os.write(c.source_w, view) :]
        os.close(c.source_w)
        if self.spares:
            # The next task likely needs the same frame: have its child fork and lock
            # down while this one runs and the engine works on its answer.
            with contextlib.suppress(HostGone):
                # This task's child is already running; the next task meets the news.
                self._spare = self._ask(key, message)
        pidfd, c.pidfd = c.pidfd, None
        instances = collect(
            c.pid,
            pidfd,
            c.result_r,
            limits,
            cpu_limit_s(limits.time_limit_s),
            started=started,
            cancel_fd=cancel_fd,
            reap=self._wait_exit,
            defer=lambda _pid: None,
        )
        return instances, c.meta


def _error(error_type: str, message: str) -> errors.StrategyqError:
    for cls in (errors.DataError, errors.TaskValidationError, errors.SandboxUnavailable):
        if cls.error_type == error_type:
            return cls(message)
    return errors.DataError(message)
