"""Measure the system calls legitimate strategies make after lock-down.

Runs the legitimate corpus (``tests/unit/sandbox_legit.py``) through the real
sandbox host (``python -m strategyq.executor.sandbox_host``) started under ``strace -f``,
then prints, for every call made by a child after its seccomp filter was
loaded: how often, whether the allow-list (``strategyq.sandbox.syscalls``)
has it, and how many calls the filter refused. This is how the allow-list
was derived; run it again after upgrading Python, pandas, numpy or glibc::

    python -m tools.measure_syscalls            # needs strace on PATH

Exit status 1 when a call was refused (the table then needs a look).
"""

from __future__ import annotations

import collections
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.unit.sandbox_legit import LEGIT

from strategyq.data.synth import write_synthetic
from strategyq.sandbox import syscalls
from strategyq.sandbox.forkclient import ForkClient
from strategyq.settings import SandboxLimits, Settings

_LINE = re.compile(r"^(\d+)\s+([a-z0-9_]+)\(")
_ERRNO = re.compile(r"\) += -1 (E[A-Z]+)")


def _trace(root: Path, trace: Path) -> int:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    config = Settings.from_env({"STRATEGYQ_HOME": str(root.parent)}).for_child_process().decode()
    host = subprocess.Popen(
        ["strace", "-f", "-qq", "-o", str(trace), sys.executable, "-m",
         "strategyq.executor.sandbox_host", str(theirs.fileno()), config],
        pass_fds=(theirs.fileno(),),
    )  # fmt: skip
    theirs.close()
    ours.recv(1 << 16)
    client = ForkClient(ours, spares=False)
    limits = SandboxLimits(time_limit_s=120, memory_mb=2048, answer_max_bytes=1 << 22)
    request = {
        "symbols": ["SYN0001", "SYN0002", "SYN0003", "SYN0004"],
        "start": "2024-01-01T00:00:00",
        "end": "2024-12-31T00:00:00",
        "adjusted": True,
        "warmup_sessions": 250,
        "lookback_sessions": None,
    }
    failures = 0
    for case in LEGIT:
        for check_policy in (True, False):
            try:
                client.run(case.code, request, limits, check_policy=check_policy)
            except Exception as exc:
                failures += 1
                print(f"FAILED {case.name} (policy {check_policy}): {exc}", file=sys.stderr)
    ours.close()
    host.wait()
    return failures


def main() -> int:
    if shutil.which("strace") is None:
        print("strace is not installed (apt-get install strace)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        write_synthetic(root, 6, 2, seed=7)
        trace = Path(tmp) / "trace"
        failures = _trace(root, trace)
        locked: set[str] = set()
        calls: collections.Counter[str] = collections.Counter()
        refused: collections.Counter[str] = collections.Counter()
        with open(trace, encoding="utf-8", errors="replace") as lines:
            for line in lines:
                match = _LINE.match(line)
                if not match:
                    continue
                pid, name = match.groups()
                found = _ERRNO.search(line)
                err = found.group(1) if found else None
                if name == "prctl" and "PR_SET_SECCOMP" in line:
                    locked.add(pid)
                elif pid in locked:
                    calls[name] += 1
                    if err == "EPERM" or (err == "ENOSYS" and name in syscalls.ENOSYS):
                        refused[name] += 1
    known = {**syscalls.ALLOWED, **{k: v[0].reason for k, v in syscalls.FILTERED.items()}}
    print(f"{'call':24} {'calls':>8} {'refused':>8}  allow-list")
    for name, count in sorted(calls.items()):
        print(f"{name:24} {count:8} {refused[name]:8}  {known.get(name, '-- not listed --')}")
    print(f"{len(locked)} children traced, {failures} strategies failed", file=sys.stderr)
    # Refusals are expected from the start-up canary (a socket, a write, another
    # process's priority); a strategy that failed is what needs a look.
    return 1 if failures else 0


if __name__ == "__main__":
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    raise SystemExit(main())
