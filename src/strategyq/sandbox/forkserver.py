"""A fork server: sandbox children forked from a process that never sees a strategy or a result.

A child's memory is a copy of its parent's, and a strategy that escaped the
policy could read it. A parent that has run the engine for earlier tasks still
holds their code and results in freed memory, so children are not forked
from it. Instead, the fork server process holds only market data (and the
warm pandas/numpy): on request it loads a frame and forks a child. The
client (the executor) passes the child's two pipe ends over a unix socket
(``SCM_RIGHTS``): the strategy's source reaches the child directly, and its
answer goes straight back to the client, never through the fork server.

Messages are JSON, one per SEQPACKET datagram::

    client → server  {"request": {...data request...}, "limits": {...}, "sandboxed": bool}
                     with fds [source_read_end, result_write_end]
    server → client  {"pid": int, "meta": {...}}  or  {"error": str, "error_type": str}
    server → client  {"exit": pid, "status": int, "cpu_s": float}   when a child is reaped
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import socket
import time
from collections.abc import Callable
from typing import Any

import orjson

from strategyq import errors
from strategyq.sandbox import checker, child, policy
from strategyq.sandbox.lockdown import cpu_limit_s
from strategyq.sandbox.lockdown import plan as make_plan
from strategyq.sandbox.runner import collect
from strategyq.settings import SandboxLimits

log = logging.getLogger(__name__)

MAX_MESSAGE = 1 << 20
# Longer than the policy allows, so an oversized source still gets the policy's message.
MAX_SOURCE_BYTES = 4 * policy.MAX_SOURCE_CHARS + 1

Loader = Callable[[dict[str, Any]], tuple[Any, dict[str, Any]]]
"""Turns a data request into (frame, metadata); raises StrategyqError for bad requests."""


def _limits(raw: dict[str, Any]) -> SandboxLimits:
    return SandboxLimits(
        time_limit_s=float(raw["time_limit_s"]),
        memory_mb=int(raw["memory_mb"]),
        result_max_bytes=int(raw["result_max_bytes"]),
        max_open_files=int(raw["max_open_files"]),
    )


def _limits_json(limits: SandboxLimits) -> dict[str, Any]:
    return {
        "time_limit_s": limits.time_limit_s,
        "memory_mb": limits.memory_mb,
        "result_max_bytes": limits.result_max_bytes,
        "max_open_files": limits.max_open_files,
    }


# ============================================================================ server side


def serve(sock: socket.socket, load: Loader) -> None:
    """Answer fork requests until the client closes its end."""
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    children: dict[int, int] = {}  # pidfd -> pid
    while True:
        for fd, _events in poller.poll():
            if fd == sock.fileno():
                message, fds, _flags, _addr = socket.recv_fds(sock, MAX_MESSAGE, 2)
                if not message:
                    for pidfd in children:
                        os.close(pidfd)
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
                notice = {"exit": pid, "status": status, "cpu_s": usage.ru_utime + usage.ru_stime}
                sock.send(orjson.dumps(notice))


def _fork_one(
    sock: socket.socket, request: dict[str, Any], fds: list[int], load: Loader
) -> int | None:
    source_fd, result_fd = fds
    try:
        try:
            frame, meta = load(request["request"])
        except errors.StrategyqError as exc:
            sock.send(orjson.dumps({"error": str(exc), "error_type": exc.error_type}))
            return None
        limits = _limits(request["limits"])
        plan = make_plan(
            memory_mb=limits.memory_mb,
            time_limit_s=limits.time_limit_s,
            max_open_files=limits.max_open_files,
            sandboxed=bool(request["sandboxed"]),
        )
        restricted = bool(request["restricted"])
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child always leaves through os._exit
            sock.close()
            source = child.read_source(source_fd, MAX_SOURCE_BYTES)
            child.main(plan, result_fd, source, None, None, frame, restricted=restricted)
        with contextlib.suppress(PermissionError, ProcessLookupError):
            os.setpgid(pid, pid)
        sock.send(orjson.dumps({"pid": pid, "meta": meta}))
        return pid
    finally:
        os.close(source_fd)
        os.close(result_fd)


# ============================================================================ client side


class ForkClient:
    """The executor's side: ask for a child, feed it the source, collect its answer."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._exits: dict[int, tuple[int, float]] = {}

    def _receive(self) -> dict[str, Any]:
        message = self.sock.recv(MAX_MESSAGE)
        if not message:
            raise errors.SandboxUnavailable("the sandbox fork server exited")
        value = orjson.loads(message)
        assert isinstance(value, dict)
        return value

    def _drop_notices(self) -> None:
        """Discard exit notices of children killed after they answered (non-blocking)."""
        self.sock.setblocking(False)
        try:
            while True:
                self._receive()
        except BlockingIOError:
            pass
        finally:
            self.sock.setblocking(True)
        self._exits.clear()

    def _wait_exit(self, pid: int) -> tuple[int, float]:
        while pid not in self._exits:
            notice = self._receive()
            if "exit" in notice:
                self._exits[int(notice["exit"])] = (int(notice["status"]), float(notice["cpu_s"]))
        return self._exits.pop(pid)

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
        if check_policy:
            checker.check(source)  # a friendly error now, without forking
        if insecure_no_sandbox:
            log.warning("running a strategy WITHOUT Landlock and seccomp (insecure_no_sandbox)")
        self._drop_notices()
        source_r, source_w = os.pipe()
        result_r, result_w = os.pipe()
        message = {
            "request": request,
            "limits": _limits_json(limits),
            "sandboxed": not insecure_no_sandbox,
            "restricted": check_policy,
        }
        started = time.monotonic()
        try:
            socket.send_fds(self.sock, [orjson.dumps(message)], [source_r, result_w])
        finally:
            os.close(source_r)
            os.close(result_w)
        try:
            reply = self._receive()
            while "exit" in reply:
                reply = self._receive()
            if "error" in reply:
                raise _error(str(reply["error_type"]), str(reply["error"]))
            pid = int(reply["pid"])
            # Before the child can read its source (and so before it can exit and be reaped).
            pidfd = os.pidfd_open(pid)
            with contextlib.suppress(BrokenPipeError):
                view = memoryview(source.encode())
                while view:
                    view = view[os.write(source_w, view) :]
        except BaseException:
            os.close(result_r)
            raise
        finally:
            os.close(source_w)
        instances = collect(
            pid,
            pidfd,
            result_r,
            limits,
            cpu_limit_s(limits.time_limit_s),
            started=started,
            cancel_fd=cancel_fd,
            reap=self._wait_exit,
            defer=lambda _pid: None,
        )
        return instances, dict(reply["meta"])


def _error(error_type: str, message: str) -> errors.StrategyqError:
    for cls in (errors.DataError, errors.TaskValidationError, errors.SandboxUnavailable):
        if cls.error_type == error_type:
            return cls(message)
    return errors.DataError(message)
