"""The warm launcher: starts ``strategyq`` commands by forking a process that has already
imported them (``python -m tests.warm_launcher CONTROL_FD``; driven by
:mod:`tests.warm_cli`).

Each command still runs in a process of its own, with its own argument vector,
environment, working directory, standard streams and exit status, against the same real
Redis, PostgreSQL and subprocesses; only the interpreter's start and the imports every
command repeats (typer, redis, the queue's modules, FastAPI for ``serve``) are paid once
per test worker instead of once per command. ``tests/unit/test_warm_cli.py`` checks that a
command forked here answers exactly as ``python -m strategyq`` does.

The launcher stays single-threaded (checked at start), so a fork copies no lock that
another thread holds. Requests come on a SOCK_SEQPACKET socket, one JSON message each
with four descriptors (stdin, stdout, stderr, and the write end of a status pipe); the
reply is the child's pid. When the child exits, its wait status is written, as the exit
code ``subprocess`` would report (negative for a signal), to its status pipe.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import io
import os
import runpy
import select
import signal
import socket
import struct
import sys
import threading
import traceback
from typing import Any

import orjson

PRELOADED = (
    "strategyq.cli",
    "strategyq.cli.common",
    "strategyq.client",
    "strategyq.queue.view",
    "strategyq.settings",
    "strategyq.worker",
    "strategyq.api.app",
    "redis",
    "rich.console",
    "rich.table",
    "uvicorn",
)
"""What the commands import on their first call (pandas is left to those that use it)."""


def _exit_code(exc: SystemExit) -> int:
    """The exit code the interpreter gives for an uncaught SystemExit."""
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


_REPLACED: list[Any] = []
"""The launcher's own stream objects, kept so that collecting them never closes 0, 1, 2."""


def _fresh_standard_streams() -> None:
    """Make sys.stdin, stdout and stderr anew on descriptors 0, 1 and 2, as the interpreter
    makes them at start for this environment: the launcher's were made for its own
    descriptors (a file is seekable, a pipe is not; a terminal is line-buffered)."""
    encoding, _, errors = os.environ.get("PYTHONIOENCODING", "").partition(":")
    unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))
    _REPLACED.extend([sys.stdin, sys.stdout, sys.stderr])
    streams = []
    for fd, old in enumerate((sys.stdin, sys.stdout, sys.stderr)):
        raw = io.FileIO(fd, "rb" if fd == 0 else "wb", closefd=False)
        buffered: Any = raw
        if fd == 0:
            buffered = io.BufferedReader(raw)
        elif not unbuffered:
            buffered = io.BufferedWriter(raw)
        streams.append(
            io.TextIOWrapper(
                buffered,
                encoding=encoding or old.encoding,
                errors="backslashreplace" if fd == 2 else (errors or old.errors),
                # stdout is line-buffered on a terminal; stderr always (Python 3.9+).
                line_buffering=fd == 2 or (fd == 1 and raw.isatty()),
                write_through=unbuffered and fd != 0,
            )
        )
    sys.stdin, sys.stdout, sys.stderr = streams
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = streams


def _run_command(request: dict[str, Any]) -> int:
    """In the forked child: become ``python -m strategyq ARGS`` and run to the end."""
    if request.get("new_session"):
        os.setsid()
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    _fresh_standard_streams()
    sys.argv = ["strategyq", *request["args"]]
    try:
        # As ``python -m strategyq``: the package's __main__ runs as the main module, so
        # click names the program as it does there.
        runpy.run_module("strategyq", run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:
        code = _exit_code(exc)
    except KeyboardInterrupt:
        traceback.print_exc()
        code = -signal.SIGINT
    except BaseException:
        traceback.print_exc()
        code = 1
    try:
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
    return code


def main(control_fd: int) -> None:
    from strategyq.executor.frames import die_with_parent

    die_with_parent()
    control = socket.socket(fileno=control_fd)
    for name in PRELOADED:
        importlib.import_module(name)
    threads = len(os.listdir("/proc/self/task"))
    if threading.active_count() != 1 or threads != 1:
        raise SystemExit(f"the warm launcher must be single-threaded to fork; it has {threads}")
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    status: dict[int, int] = {}  # child pid -> write end of its status pipe
    control.send(b"ready")
    while True:
        readable = select.select([control, wake_r], [], [])[0]
        if wake_r in readable:
            os.read(wake_r, 512)
            while status:
                pid, wait_status = os.waitpid(-1, os.WNOHANG)
                if pid == 0:
                    break
                fd = status.pop(pid, None)
                if fd is not None:
                    os.write(fd, struct.pack("i", os.waitstatus_to_exitcode(wait_status)))
                    os.close(fd)
        if control in readable:
            message, fds, _, _ = socket.recv_fds(control, 1 << 20, 4)
            if not message:
                return  # the test worker is gone
            request = orjson.loads(message)
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                code = 1
                try:
                    signal.set_wakeup_fd(-1)
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    for fd in (wake_r, wake_w, control.fileno(), *status.values(), fds[3]):
                        os.close(fd)
                    for target, fd in enumerate(fds[:3]):
                        os.dup2(fd, target, inheritable=True)
                    for fd in set(fds[:3]) - {0, 1, 2}:
                        os.close(fd)
                    code = _run_command(request)
                finally:
                    if code < 0:
                        signal.signal(-code, signal.SIG_DFL)
                        os.kill(os.getpid(), -code)
                    os._exit(code)
            for fd in fds[:3]:
                os.close(fd)
            status[pid] = fds[3]
            control.send(struct.pack("i", pid))


if __name__ == "__main__":
    main(int(sys.argv[1]))
