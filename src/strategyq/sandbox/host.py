"""The sandbox host: loads the frames strategies run on and has a fork server fork their children.

It holds the market data (a store handle, a cache of frames) and so must never
be the parent of a sandbox child. Between its client (the executor's
:class:`~strategyq.sandbox.forkclient.ForkClient`) and its fork servers
(:mod:`strategyq.sandbox.forkserver`, processes it starts as fresh programs)
it does three things per request: load the frame the request names (or take
it from its cache), written once into a sealed memfd
(:mod:`strategyq.sandbox.shared_frame`); send the fork server the request
names that memfd with the child's two pipe ends and the limits — never the
request; and pass the fork servers' answers back to the client, with the
frame's metadata and the forking server's pid added.

Two fork servers, because a fork costs in proportion to its parent's memory
mappings: the lean one preloads pandas, numpy and the standard library, the
full one also the optional libraries (``STRATEGYQ_SANDBOX_LIBRARIES``), which
multiply those mappings. The client names the server per request (the lean
one unless its strategy imports an optional library). With no optional
library configured there is only the lean one, and every request goes to it.

The cache holds sealed memfds, so a frame asked for again is neither loaded
nor copied: its child maps the same pages.
"""

from __future__ import annotations

import array
import contextlib
import ctypes
import logging
import os
import select
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from strategyq import errors
from strategyq.data.cache import LRUCache
from strategyq.sandbox.shared_frame import SharedFrame, share

log = logging.getLogger(__name__)

Loader = Callable[[dict[str, Any]], tuple[Any, dict[str, Any]]]
"""Turns a data request into (frame, metadata); raises StrategyqError for bad requests."""

MAX_MESSAGE = 1 << 20

# What the fork server's environment holds: nothing that names a path of this host
# or a secret, only what the interpreter and the libraries read at start-up.
_PASSTHROUGH = ("PATH", "LANG", "LC_ALL", "PYTHONPATH", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
_ONE_THREAD = (
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)


@dataclass
class ForkServer:
    """A running fork server process and this host's socket to it."""

    process: subprocess.Popen[bytes]
    sock: socket.socket
    layers: dict[str, bool]

    @classmethod
    def start(cls, libraries: Sequence[str] | None = None) -> ForkServer:
        """Start a fork server as a fresh program and wait until it is warm.

        ``libraries``: the optional libraries it preloads (``STRATEGYQ_SANDBOX_LIBRARIES``;
        every one when None), handed over on its command line since it reads no settings.
        """
        return cls.launch(libraries).wait_ready()

    @classmethod
    def launch(cls, libraries: Sequence[str] | None = None) -> _Starting:
        """Start a fork server without waiting (:meth:`_Starting.wait_ready` waits)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = {k: os.environ[k] for k in _PASSTHROUGH if k in os.environ}
        env.update(dict.fromkeys(_ONE_THREAD, "1"))
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "strategyq.sandbox.zygote",
                str(theirs.fileno()),
                *([] if libraries is None else [",".join(libraries) or "none"]),
            ],
            stdin=subprocess.DEVNULL,
            pass_fds=(theirs.fileno(),),
            close_fds=True,
            env=env,
            cwd="/",
        )
        theirs.close()
        return _Starting(process, ours)

    def close(self) -> None:
        self.sock.close()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@dataclass
class _Starting:
    """A fork server warming up."""

    process: subprocess.Popen[bytes]
    sock: socket.socket

    def wait_ready(self) -> ForkServer:
        """Wait until it has warmed up and probed its layers."""
        ready = orjson.loads(self.sock.recv(1 << 16) or b"{}")
        if not ready.get("ready"):
            self.process.wait()
            self.sock.close()
            raise errors.SandboxUnavailable("the fork server exited at start-up")
        layers = {str(k): bool(v) for k, v in ready["layers"].items()}
        return ForkServer(self.process, self.sock, layers)


LEAN, FULL = "lean", "full"


def start_servers(libraries: Sequence[str]) -> dict[str, ForkServer]:
    """The fork servers for ``libraries`` (the optional ones configured), warmed up together:
    ``lean`` (none of them) always, ``full`` (all of them) when there are any."""
    return wait_servers(launch_servers(libraries))


def launch_servers(libraries: Sequence[str]) -> dict[str, _Starting]:
    """:func:`start_servers` without waiting (:func:`wait_servers` waits)."""
    starting = {LEAN: ForkServer.launch(())}
    if libraries:
        starting[FULL] = ForkServer.launch(libraries)
    return starting


def wait_servers(starting: dict[str, _Starting]) -> dict[str, ForkServer]:
    """Wait until every server :func:`launch_servers` started is warm (all stopped if one
    fails)."""
    servers: dict[str, ForkServer] = {}
    try:
        for name, pending in starting.items():
            servers[name] = pending.wait_ready()
    except BaseException:
        for name, pending in starting.items():
            if name not in servers:
                pending.sock.close()
                with contextlib.suppress(ProcessLookupError):
                    pending.process.kill()
                pending.process.wait()
        for server in servers.values():
            server.close()
        raise
    return servers


def layers_of(servers: dict[str, ForkServer]) -> dict[str, bool]:
    """The layers every server holds: a layer counts only if each server's canary found it."""
    keys = {k for server in servers.values() for k in server.layers}
    return {k: all(server.layers.get(k, False) for server in servers.values()) for k in keys}


def serve(
    sock: socket.socket,
    load: Loader,
    servers: dict[str, ForkServer],
    *,
    cache_bytes: int,
) -> None:
    """Answer the client's fork requests until it closes its end, or a fork server goes.

    ``servers``: :func:`start_servers`'s or :func:`wait_servers`'. ``cache_bytes`` bounds the
    memfds kept for requests asked for again.
    """
    try:
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            _Relay(sock, load, servers, LRUCache(cache_bytes)).run()
    finally:
        for server in servers.values():
            server.close()


@dataclass
class _Relay:
    client: socket.socket
    load: Loader
    servers: dict[str, ForkServer]
    cache: LRUCache[tuple[SharedFrame, dict[str, Any]]]

    def run(self) -> None:
        poller = select.poll()
        poller.register(self.client.fileno(), select.POLLIN)
        by_fd = {server.sock.fileno(): server for server in self.servers.values()}
        for fd in by_fd:
            poller.register(fd, select.POLLIN)
        metas: dict[Any, tuple[dict[str, Any], SharedFrame]] = {}
        while True:
            for fd, _events in poller.poll():
                if fd == self.client.fileno():
                    data, fds = _receive(self.client)
                    if not data:
                        return
                    self._forward(orjson.loads(data), fds, metas)
                else:
                    server = by_fd[fd]
                    data = server.sock.recv(MAX_MESSAGE)
                    if not data:
                        return  # a fork server is gone: so are we (the client starts anew)
                    self._answer(data, metas, server)

    def _server(self, name: Any) -> ForkServer:
        """The server a request names; the lean one when it names one that is not running
        (no optional library configured: the lean server is the only one)."""
        return self.servers.get(str(name), self.servers[LEAN])

    def _forward(
        self,
        message: dict[str, Any],
        fds: list[int],
        metas: dict[Any, tuple[dict[str, Any], SharedFrame]],
    ) -> None:
        tag = message.get("id")
        try:
            if len(fds) != 2:
                self._reply({"id": tag, "error": "bad request", "error_type": "internal"})
                return
            try:
                shared, meta = self._frame(message["request"])
            except errors.StrategyqError as exc:
                self._reply({"id": tag, "error": str(exc), "error_type": exc.error_type})
                return
            except Exception:
                # A frame that cannot be shared (a loader bug): this request fails, the
                # host keeps serving.
                log.exception("the sandbox host could not load or share a frame")
                self._reply(
                    {
                        "id": tag,
                        "error": "the market data could not be prepared for "
                        "the strategy; the worker log has the details",
                        "error_type": "internal",
                    }
                )
                return
            order = {k: message[k] for k in ("limits", "sandboxed", "restricted")}
            order.update(id=tag, landlock_abi_max=message.get("landlock_abi_max"))
            server = self._server(message.get("server", LEAN))
            socket.send_fds(server.sock, [orjson.dumps(order)], [*fds, shared.fd])
            metas[tag] = (meta, shared)
        finally:
            for fd in fds:
                os.close(fd)

    def _frame(self, request: dict[str, Any]) -> tuple[SharedFrame, dict[str, Any]]:
        key = orjson.dumps(request, option=orjson.OPT_SORT_KEYS)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        frame, meta = self.load(request)
        shared = share(frame)
        del frame
        give_back_free_memory()
        self.cache.put(key, (shared, meta), shared.size)
        return shared, meta

    def _answer(
        self,
        data: bytes,
        metas: dict[Any, tuple[dict[str, Any], SharedFrame]],
        server: ForkServer,
    ) -> None:
        value = orjson.loads(data)
        if "exit" in value:
            self.client.send(data)
            return
        meta, shared = metas.pop(value.get("id"), (None, None))
        if "pid" in value and shared is not None:
            value["meta"] = meta
            value["forked_by"] = server.process.pid
            # The executor maps the same sealed memfd read-only for the engine (after
            # checking its seals) rather than loading the rows a second time.
            socket.send_fds(self.client, [orjson.dumps(value)], [shared.fd])
            return
        self._reply(value)

    def _reply(self, value: dict[str, Any]) -> None:
        self.client.send(orjson.dumps(value))


def give_back_free_memory() -> None:
    """Return the memory the load and the copy into the memfd freed to the system.

    Arrow's allocator (the store's reads, the frame's string column) and glibc's keep
    freed pages for reuse; in this process they would stay resident beside the memfd
    (about a third of the frame's size) until the next load.
    """
    import pyarrow as pa

    pa.default_memory_pool().release_unused()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _receive(sock: socket.socket) -> tuple[bytes, list[int]]:
    fds = array.array("i")
    data, ancillary, _flags, _addr = sock.recvmsg(MAX_MESSAGE, socket.CMSG_SPACE(2 * fds.itemsize))
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(payload[: len(payload) - (len(payload) % fds.itemsize)])
    return data, list(fds)
