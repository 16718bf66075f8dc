"""The fork server: a process that imported the libraries, holds no task's data, and forks children.

A child's memory starts as a copy of its parent's, and a strategy that escaped
the policy can read all of it (``gc.unfreeze()`` and ``gc.get_objects()``, or
raw reads of every mapping). So the parent of every sandbox child is this
process, started as a fresh program (``python -m strategyq.sandbox.zygote``,
by :class:`strategyq.sandbox.host.ForkServer`) with an environment of ``PATH``,
locale and thread settings, ``/`` as its working directory and no settings:
it imports pandas, numpy and everything a strategy may use
(:func:`strategyq.sandbox.warm_up`), empties its environment, and then only
ever receives limits and descriptors. It never sees a request, a frame, a strategy, a result, a path
of the data store or a secret.

The sandbox host (:mod:`strategyq.sandbox.host`) sends one message per child,
with three descriptors: the child's source pipe, its result pipe, and the
sealed memfd of its frame (:mod:`strategyq.sandbox.shared_frame`). The child
maps its own frame, locks down, and reads its program from the source pipe.

Messages are JSON, one per SEQPACKET datagram::

    host → server  {"id": n, "limits": {...}, "sandboxed": b, "restricted": b,
                    "landlock_abi_max": int | null}
                   with fds [source_read_end, result_write_end, frame_memfd]
    server → host  {"id": n, "pid": int}  or  {"id": n, "error": str, "error_type": str}
    server → host  {"exit": pid, "status": int, "cpu_s": float}   when a child is reaped
"""

from __future__ import annotations

import array
import contextlib
import logging
import os
import select
import socket
from typing import Any

import orjson

from strategyq.sandbox import child
from strategyq.sandbox.lockdown import LockdownPlan
from strategyq.sandbox.lockdown import plan as make_plan
from strategyq.sandbox.shared_frame import attach

log = logging.getLogger(__name__)

MAX_MESSAGE = 1 << 16
_FDS = 3


def plan_for(
    limits: dict[str, Any], sandboxed: bool, landlock_abi_max: int | None, extra_bytes: int = 0
) -> LockdownPlan:
    """The lock-down plan of a fork request's limits (``extra_bytes``: the mapped frame)."""
    return make_plan(
        memory_mb=int(limits["memory_mb"]),
        time_limit_s=float(limits["time_limit_s"]),
        max_open_files=int(limits["max_open_files"]),
        max_threads=int(limits.get("max_threads", 64)),
        sandboxed=sandboxed,
        landlock_abi_max=landlock_abi_max,
        extra_bytes=extra_bytes,
    )


def spawn(
    plan: LockdownPlan,
    source_fd: int,
    result_fd: int,
    frame: Any,
    *,
    restricted: bool,
    frame_fd: int | None = None,
) -> int:
    """Fork one child that locks down, then reads its program from ``source_fd``.

    The one way a sandbox child is ever started (the fork server's and
    :func:`strategyq.sandbox.local.run`'s alike). With ``frame_fd`` the child
    maps its frame from that sealed memfd (``frame`` is None). Returns its
    pid; the child is its own process group.
    """
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child always leaves through os._exit
        try:
            if frame_fd is not None:
                frame = attach(frame_fd)
                os.close(frame_fd)
        except BaseException:
            os._exit(70)
        child.main(
            plan, result_fd, None, None, None, frame, restricted=restricted, source_fd=source_fd
        )
    with contextlib.suppress(PermissionError, ProcessLookupError):
        os.setpgid(pid, pid)
    return pid


def serve(sock: socket.socket) -> None:
    """Answer fork requests until the host closes its end (or goes away)."""
    with contextlib.suppress(ConnectionResetError, BrokenPipeError):
        _serve(sock)


def _serve(sock: socket.socket) -> None:
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    children: dict[int, int] = {}  # pidfd -> pid
    try:
        while True:
            for fd, _events in poller.poll():
                if fd == sock.fileno():
                    message, fds = _receive(sock)
                    if message is None:
                        return
                    pid = _fork_one(sock, message, fds)
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


def _receive(sock: socket.socket) -> tuple[dict[str, Any] | None, list[int]]:
    fds = array.array("i")
    data, ancillary, _flags, _addr = sock.recvmsg(
        MAX_MESSAGE, socket.CMSG_SPACE(_FDS * fds.itemsize)
    )
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
    if not data:
        for fd in fds:
            os.close(fd)
        return None, []
    return orjson.loads(data), list(fds)


def _fork_one(sock: socket.socket, message: dict[str, Any], fds: list[int]) -> int | None:
    tag = message.get("id")
    try:
        if len(fds) != _FDS:
            sock.send(orjson.dumps({"id": tag, "error": "bad request", "error_type": "internal"}))
            return None
        source_fd, result_fd, frame_fd = fds
        cap = message.get("landlock_abi_max")
        plan = plan_for(
            message["limits"],
            bool(message["sandboxed"]),
            None if cap is None else int(cap),
            extra_bytes=os.fstat(frame_fd).st_size,
        )
        pid = spawn(
            plan,
            source_fd,
            result_fd,
            None,
            restricted=bool(message["restricted"]),
            frame_fd=frame_fd,
        )
        sock.send(orjson.dumps({"id": tag, "pid": pid}))
        return pid
    finally:
        for fd in fds:
            os.close(fd)
