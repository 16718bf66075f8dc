"""The executor's side of the sandbox host: ask for a child, feed it its program, read its answer.

The sandbox host (:mod:`strategyq.sandbox.host`) loads the frame a request
names and has the fork server (:mod:`strategyq.sandbox.forkserver`) fork a
child for it. This client passes the child's two pipe ends over a unix socket
(``SCM_RIGHTS``): the strategy's program reaches the child directly, and its
answer comes straight back here, through neither of those processes.

Because a child locks down *before* it reads its program, the client can ask
for the next child ahead of time (a *spare*, for the same data and limits as
the task just run) while it computes the current result; a task that needs
the same frame then skips the fork and lock-down altogether. An unused spare
reads end of file and exits.

Every sandbox child is fed by :func:`feed_and_collect` (this client's,
:func:`strategyq.sandbox.local.run`'s and the start-up self-check's alike).

The host has two fork servers: a lean one (pandas, numpy, the standard
library) and, when ``STRATEGYQ_SANDBOX_LIBRARIES`` names any, a full one that
also preloads those libraries. A fork from the lean one is cheaper (a smaller
parent to copy), so each request names the server its strategy needs
(:func:`server_for`): ``full`` only for a strategy that imports an optional
library. The policy refuses dynamic imports, so the imports the checker found
are all the strategy can ever import.

Messages are JSON, one per SEQPACKET datagram::

    client → host  {"id": n, "request": {...}, "limits": {...}, "sandboxed": b,
                    "restricted": b, "landlock_abi_max": int | null,
                    "server": "lean" | "full"}
                   with fds [source_read_end, result_write_end]
    host → client  {"id": n, "pid": int, "meta": {...}, "forked_by": server_pid}
                   or {"id": n, "error": str, "error_type": str}
    host → client  {"exit": pid, "status": int, "cpu_s": float}   when a child is reaped
"""

from __future__ import annotations

import array
import ast
import contextlib
import functools
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from strategyq import errors
from strategyq.sandbox import checker, child, policy, result
from strategyq.sandbox.lockdown import cpu_limit_s
from strategyq.sandbox.runner import collect
from strategyq.sandbox.shared_frame import SharedFrame
from strategyq.settings import SandboxLimits

log = logging.getLogger(__name__)

MAX_MESSAGE = 1 << 20


LEAN, FULL = "lean", "full"
"""The fork servers of a sandbox host: without and with the optional libraries."""


@functools.lru_cache(maxsize=32)
def checked_program(source: str) -> bytes:
    """Check ``source`` against the policy; the program its child runs (the compiled tree).

    Cached by source text: a strategy submitted again (a screen every minute, a
    parameter sweep over the same code) is parsed, checked and compiled once.
    A source that fails the check raises each time (errors are not cached).
    """
    report = checker.check(source)
    return child.encode_program(source, report.code, report.entry, report.takes_params)


def server_for(source: str, check_policy: bool = True) -> str:
    """The fork server a child for ``source`` comes from: :data:`FULL` if it imports an
    optional library (or runs unchecked, when it could import anything), else :data:`LEAN`.

    A source that does not parse gets :data:`LEAN` (its run ends with the check's error).
    """
    return FULL if not check_policy else _server_of(source)


@functools.lru_cache(maxsize=32)
def _server_of(source: str) -> str:
    # The import statements are every module a checked strategy can import: the policy
    # refuses dynamic imports (__import__, importlib), and its check runs before the child
    # is fed. Relative imports are refused too, so only absolute names count.
    try:
        tree = checker.parse(source)
    except errors.StrategyqError:
        return LEAN
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            roots.add(node.module.split(".")[0])
    return FULL if roots & set(policy.LIBRARIES) else LEAN


class HostGone(errors.SandboxUnavailable):
    """Raised when the sandbox host (or its fork server) is gone (killed, or out of memory)."""


def limits_json(limits: SandboxLimits) -> dict[str, Any]:
    return {
        "time_limit_s": limits.time_limit_s,
        "memory_mb": limits.memory_mb,
        "answer_max_bytes": limits.answer_max_bytes,
        "max_open_files": limits.max_open_files,
        "max_threads": limits.max_threads,
    }


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
    forked_by: int | None = None
    frame: SharedFrame | None = None
    """The sealed memfd of the child's frame, as the host sent it with the child's pid."""

    def discard(self) -> None:
        """Close our ends: a waiting child reads end of file and exits."""
        for fd in (self.source_w, self.result_r, self.pidfd):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.pidfd = None
        if self.frame is not None:
            self.frame.close()
            self.frame = None


class ForkClient:
    """The executor's side: ask for a child, feed it the source, collect its answer."""

    def __init__(
        self, sock: socket.socket, *, spares: bool = True, landlock_abi_max: int | None = None
    ) -> None:
        self.sock = sock
        self.spares = spares
        self.landlock_abi_max = landlock_abi_max
        self.last_logs = result.Logs()
        self.last_forked_by: int | None = None
        """The pid of the fork server that forked the last run's child."""
        self._next_tag = 0
        self._replies: dict[int, dict[str, Any]] = {}
        self._exits: dict[int, tuple[int, float]] = {}
        self._spare: _Child | None = None

    # -- messages

    def _receive(self) -> None:
        """Read one message (blocking) and file it as a reply or an exit notice."""
        fds = array.array("i")
        try:
            message, ancillary, _flags, _addr = self.sock.recvmsg(
                MAX_MESSAGE, socket.CMSG_SPACE(fds.itemsize)
            )
        except ConnectionResetError:
            message, ancillary = b"", []
        for level, kind, payload in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
        # Owned at once (closed when dropped), whatever happens to the message next.
        frames = [SharedFrame(fd, os.fstat(fd).st_size) for fd in fds]
        if not message:
            raise HostGone("the sandbox host process exited; retry the task")
        value = orjson.loads(message)
        if "exit" in value:
            self._exits[int(value["exit"])] = (int(value["status"]), float(value["cpu_s"]))
        else:
            if len(frames) == 1 and "pid" in value:
                value["frame"] = frames[0]
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
        c.forked_by = reply.get("forked_by")
        c.frame = reply.get("frame")
        # The child cannot exit (and be reaped) before it reads its source: safe to open now.
        c.pidfd = os.pidfd_open(c.pid)

    def prepared_frame(self) -> tuple[dict[str, Any], SharedFrame | None]:
        """The frame of the child :meth:`prepare` asked for: the loader's metadata and the
        sealed memfd the host sent (None if it sent none), which is the caller's from now on.

        Waits for the host to load the frame and fork the child, which stays the spare.

        Raises:
            The loader's own StrategyqError (e.g. DataError) for a bad request.
        """
        spare = self._spare
        assert spare is not None, "prepare() first"
        try:
            self._confirm(spare)
        except BaseException as exc:
            if self._spare is spare:
                self._spare = None
            if spare.pid is None and not spare_refused(exc):
                spare.discard()
            raise
        assert spare.meta is not None
        frame, spare.frame = spare.frame, None
        return spare.meta, frame

    def close_spare(self) -> None:
        """Let go of the spare child, if any."""
        if self._spare is not None:
            spare, self._spare = self._spare, None
            with contextlib.suppress(errors.StrategyqError, OSError):
                self._confirm(spare)
            spare.discard()

    def _message(
        self,
        request: dict[str, Any],
        limits: SandboxLimits,
        check_policy: bool,
        insecure: bool,
        server: str,
    ) -> tuple[bytes, dict[str, Any]]:
        message = {
            "request": request,
            "limits": limits_json(limits),
            "sandboxed": not insecure,
            "restricted": check_policy,
            "landlock_abi_max": self.landlock_abi_max,
            "server": server,
        }
        return orjson.dumps(message, option=orjson.OPT_SORT_KEYS), message

    def prepare(
        self,
        request: dict[str, Any],
        limits: SandboxLimits,
        *,
        check_policy: bool = True,
        insecure_no_sandbox: bool = False,
        source: str | None = None,
    ) -> None:
        """Have a child for ``request`` start loading, forking and locking down now.

        The server loads the frame while the caller does other work (its own
        load, say); the next :meth:`run` with the same arguments uses that child.
        ``source`` (the strategy to be run) picks the fork server; without it the
        child comes from the lean one.
        """
        server = LEAN if source is None else self._server_for(source, check_policy)
        key, message = self._message(request, limits, check_policy, insecure_no_sandbox, server)
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
        params: dict[str, Any] | None = None,
        runs: list[dict[str, Any]] | None = None,
        keep_columns: bool = False,
    ) -> tuple[Any, dict[str, Any]]:
        """Run ``source`` on the frame the server loads for ``request``.

        ``params`` is the second argument of a ``f(df, params)`` strategy. With
        ``runs`` (``[{"params": {...}, "until": "YYYY-MM-DD" | None}, ...]``) the
        child calls the strategy once per run on the same frame (cut after
        ``until``) and the instances come back as one list per run (or, with
        ``keep_columns``, a :class:`~strategyq.sandbox.result.ColumnRun` for a
        run whose DataFrame travelled as columns; without ``runs``, the one
        call's ``ColumnRun`` in place of its list).

        Returns:
            (instances, or one list of instances per run; the loader's metadata). What
            the strategy printed is in :attr:`last_logs` afterwards (and in the ``logs``
            attribute of an error raised for the run).

        Raises:
            The errors of :func:`strategyq.sandbox.run`, and the loader's own StrategyqError
            (e.g. DataError) for a bad request.
        """
        self.last_logs = result.Logs()
        program = _program(source, check_policy, params, runs)
        if insecure_no_sandbox:
            log.warning("running a strategy WITHOUT Landlock and seccomp (insecure_no_sandbox)")
        server = self._server_for(source, check_policy)
        key, message = self._message(request, limits, check_policy, insecure_no_sandbox, server)
        c = self._child_for(key, message)
        assert c.pid is not None and c.pidfd is not None and c.meta is not None
        self.last_forked_by = c.forked_by
        started = time.monotonic()
        instances, self.last_logs = feed_and_collect(
            c.pid,
            c.pidfd,
            c.source_w,
            c.result_r,
            program,
            limits,
            started=started,
            cancel_fd=cancel_fd,
            reap=self._wait_exit,
            defer=lambda _pid: None,
            keep_columns=keep_columns,
            after_feed=self._spare_maker(key, message),
        )
        c.pidfd = None
        if c.frame is not None:
            c.frame.close()
            c.frame = None
        return instances, c.meta

    def _server_for(self, source: str, check_policy: bool) -> str:
        return server_for(source, check_policy)

    def _child_for(self, key: bytes, message: dict[str, Any]) -> _Child:
        """The confirmed child for ``key``: the spare if it matches, else a fresh one."""
        if self._spare is not None and self._spare.key == key:
            c, self._spare = self._spare, None
        else:
            self.close_spare()
            c = self._ask(key, message)
        self._confirm(c)
        # Exit notices of earlier children (killed once they had answered) are not needed.
        self._exits = {pid: v for pid, v in self._exits.items() if pid == c.pid}
        return c

    def _spare_maker(self, key: bytes, message: dict[str, Any]) -> Callable[[], None] | None:
        """What asks for the next task's child once this one is fed (``None``: no spares)."""
        if not self.spares:
            return None

        # The next task likely needs the same frame: have its child fork and lock
        # down while this one runs and the engine works on its answer.
        def spare() -> None:
            with contextlib.suppress(HostGone):
                # This task's child is already running; the next task meets the news.
                self._spare = self._ask(key, message)

        return spare


def _program(
    source: str,
    check_policy: bool,
    params: dict[str, Any] | None,
    runs: list[dict[str, Any]] | None,
) -> bytes:
    """What a child reads from its source pipe: the program and its calls."""
    # A friendly error now, without running anything; the child runs the code
    # compiled here from the checked tree.
    return child.with_calls(
        checked_program(source) if check_policy else child.encode_program(source, None, None),
        params,
        runs,
    )


def feed_and_collect(
    pid: int,
    pidfd: int,
    source_w: int,
    result_r: int,
    program: bytes,
    limits: SandboxLimits,
    *,
    started: float,
    cancel_fd: int | None,
    reap: Callable[[int], tuple[int, float]],
    defer: Callable[[int], None],
    after_feed: Callable[[], None] | None = None,
    keep_columns: bool = False,
) -> tuple[Any, result.Logs]:
    """Write the program into a spawned child, then supervise it and read its answer.

    ``keep_columns`` is :func:`result.decode_answer`'s. Closes ``source_w``, ``pidfd``
    and ``result_r``.
    """
    with contextlib.suppress(BrokenPipeError):
        view = memoryview(program)
        while view:
            view = view[os.write(source_w, view) :]
    os.close(source_w)
    if after_feed is not None:
        after_feed()
    return collect(
        pid,
        pidfd,
        result_r,
        limits,
        cpu_limit_s(limits.time_limit_s),
        started=started,
        cancel_fd=cancel_fd,
        reap=reap,
        defer=defer,
        keep_columns=keep_columns,
    )


def spare_refused(exc: BaseException) -> bool:
    """Whether ``exc`` is the loader's error from the host (the child was discarded then)."""
    return isinstance(exc, errors.StrategyqError) and not isinstance(exc, HostGone)


def _error(error_type: str, message: str) -> errors.StrategyqError:
    for cls in (errors.DataError, errors.TaskValidationError, errors.SandboxUnavailable):
        if cls.error_type == error_type:
            return cls(message)
    return errors.DataError(message)
