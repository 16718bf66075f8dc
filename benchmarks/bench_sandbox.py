"""Sandbox overhead per call: fork, lock-down, small result, reap, on a 50k-row frame.

Two sandboxes are measured in the same run, interleaved, on the same machine:

- **allow-list** — what runs today: the seccomp allow-list with argument
  filters, every pandas/numpy/standard-library module preloaded in the
  forking parent (a bigger parent to fork), print() captured, the pid
  patched into the program;
- **deny-list (before)** — the sandbox as it was: a deny-list filter (the
  table below, kept here only to measure it) and a parent warmed with the
  handful of modules the old warm-up imported.

Each runs in its own warm parent process (a subprocess of this benchmark), so
each pays for its own parent's size at fork; the ratio allow-list / deny-list
is the target (≤ 1.1). Also shows the frame is shared, not copied (the
parent's RSS stays flat over 1,000 runs), and what the parts cost.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import statistics
import subprocess
import sys
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from benchmarks.timing import timed

ROWS = 50_000
SMALL = "def strategy(df):\n    return [{'ticker': 'AAA', 'rows': len(df)}]\n"
TARGET_RATIO = 1.1
ROUNDS = 6
CALLS_PER_ROUND = 60

# The deny-list the sandbox used before the allow-list, for the "before" yardstick only.
LEGACY_DENIED = [
    "execve",
    "execveat",
    "fork",
    "vfork",
    "socket",
    "socketpair",
    "connect",
    "bind",
    "listen",
    "accept",
    "accept4",
    "sendto",
    "sendmsg",
    "sendmmsg",
    "recvfrom",
    "recvmsg",
    "recvmmsg",
    "getsockopt",
    "setsockopt",
    "getpeername",
    "getsockname",
    "shutdown",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "process_madvise",
    "kcmp",
    "pidfd_open",
    "pidfd_getfd",
    "pidfd_send_signal",
    "rt_sigqueueinfo",
    "rt_tgsigqueueinfo",
    "tkill",
    "migrate_pages",
    "move_pages",
    "bpf",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "perf_event_open",
    "userfaultfd",
    "keyctl",
    "add_key",
    "request_key",
    "personality",
    "memfd_create",
    "memfd_secret",
    "syslog",
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "quotactl",
    "lookup_dcookie",
    "vhangup",
    "fanotify_init",
    "iopl",
    "ioperm",
    "unshare",
    "setns",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "open_tree",
    "move_mount",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "mount_setattr",
    "name_to_handle_at",
    "open_by_handle_at",
    "chmod",
    "fchmod",
    "fchmodat",
    "chown",
    "fchown",
    "lchown",
    "fchownat",
    "setxattr",
    "lsetxattr",
    "fsetxattr",
    "removexattr",
    "lremovexattr",
    "fremovexattr",
    "utime",
    "utimes",
    "utimensat",
    "futimesat",
    "creat",
    "setuid",
    "setgid",
    "setreuid",
    "setregid",
    "setresuid",
    "setresgid",
    "setfsuid",
    "setfsgid",
    "setgroups",
    "capset",
    "setrlimit",
    "setsid",
    "setpgid",
    "settimeofday",
    "clock_settime",
    "adjtimex",
    "clock_adjtime",
    "shmget",
    "shmat",
    "shmctl",
    "msgget",
    "msgsnd",
    "msgrcv",
    "msgctl",
    "semget",
    "semop",
    "semtimedop",
    "semctl",
    "mq_open",
    "mq_unlink",
    "mq_timedsend",
    "mq_timedreceive",
    "mq_notify",
    "mq_getsetattr",
]


def _legacy_program() -> bytes:
    import pyseccomp as sc

    from strategyq.sandbox import seccomp

    flt = sc.SyscallFilter(sc.ALLOW)
    for name in LEGACY_DENIED:
        with contextlib.suppress(OSError):  # a name this architecture lacks
            flt.add_rule(sc.ERRNO(errno.EPERM), name)
    for name in ("clone3", "openat2"):
        flt.add_rule(sc.ERRNO(errno.ENOSYS), name)
    flt.add_rule(sc.ERRNO(errno.EPERM), "clone", sc.Arg(0, sc.MASKED_EQ, 0x00010000, 0))
    fd = os.memfd_create("legacy", os.MFD_CLOEXEC)
    with os.fdopen(fd, "w+b") as file:
        flt.export_bpf(file)
        file.seek(0)
        program: bytes = file.read()
    del seccomp
    return program


def _frame() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    tickers = np.repeat([f"SYN{i:04d}" for i in range(100)], ROWS // 100)
    return pd.DataFrame(
        {
            "ticker": tickers,
            "date": np.tile(pd.date_range("2020-01-01", periods=ROWS // 100, freq="D"), 100),
            "close": rng.random(ROWS) * 100,
            "gap_pct": rng.normal(0, 2, ROWS),
            "volume_ratio": rng.random(ROWS) * 3,
        }
    )


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _bare_fork() -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)


def _parent(mode: str) -> None:
    """A warm parent that runs ``run()`` on command: one line in, timings out."""
    from strategyq.sandbox import preload, run, seccomp, warm_up

    logging.getLogger("strategyq.sandbox").setLevel(logging.ERROR)
    if mode == "legacy":
        preload.preload = lambda extra=(): []  # type: ignore[assignment]
        seccomp.compiled_program = _legacy_program  # type: ignore[assignment]
    from strategyq.settings import SandboxLimits

    warm_up()
    import gc

    gc.freeze()  # as the fork server does once it is warm
    from strategyq.sandbox.shared_frame import attach, share

    df = _frame()
    limits = SandboxLimits(time_limit_s=10, memory_mb=1024)
    for _ in range(20):
        run(SMALL, df, limits)
    print(json.dumps({"ready": True, "modules": len(sys.modules), "rss_mib": _rss_mib()}),
          flush=True)  # fmt: skip
    for line in sys.stdin:
        n = int(line)
        if n == -1:
            samples = timed(_bare_fork, 300)
        elif n == -2:
            samples = timed(lambda: run(SMALL, df, limits, insecure_no_sandbox=True), 300)
        elif n == -3:
            # What the sandbox host does once per distinct request (then cached).
            samples = timed(lambda: share(df).close(), 100)
        elif n == -4:
            # What each child does before lock-down: its DataFrame over the mapping.
            shared = share(df)
            samples = timed(lambda fd=shared.fd: attach(fd), 300)
            shared.close()
        else:
            samples = timed(lambda: run(SMALL, df, limits), n)
        print(json.dumps({"samples": samples, "rss_mib": _rss_mib()}), flush=True)


class _Parent:
    def __init__(self, mode: str) -> None:
        env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.bench_sandbox", "--parent", mode],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
        )  # fmt: skip
        self.info = self._read()

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        value: dict[str, Any] = json.loads(self.proc.stdout.readline())
        return value

    def ask(self, n: int) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{n}\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(30)


def main() -> dict[str, Any]:
    from strategyq.sandbox import seccomp

    new, old = _Parent("allowlist"), _Parent("legacy")
    try:
        calls: dict[str, list[float]] = {"allow-list": [], "deny-list (before)": []}
        for _ in range(ROUNDS):  # interleaved: both see the same machine
            calls["allow-list"] += new.ask(CALLS_PER_ROUND)["samples"]
            calls["deny-list (before)"] += old.ask(CALLS_PER_ROUND)["samples"]
        rows: dict[str, list[float]] = {
            "bare fork + exit + wait (floor)": new.ask(-1)["samples"],
            "run(): no Landlock/seccomp": new.ask(-2)["samples"],
            "write the frame into a sealed memfd (once per request)": new.ask(-3)["samples"],
            "a child's DataFrame over the mapped memfd": new.ask(-4)["samples"],
            "run(): deny-list sandbox (before)": calls["deny-list (before)"],
            "run(): allow-list sandbox (today)": calls["allow-list"],
            "compile the allow-list with libseccomp": timed(
                lambda: seccomp.export_bpf(seccomp.build_filter()), 30
            ),
            "patch the child's pid into the program": timed(
                lambda: seccomp.for_process(seccomp.compiled_program(), 12345), 300
            ),
        }
        before = new.ask(0)["rss_mib"]
        long_run = new.ask(1000)
        frame_mib = _frame().memory_usage(deep=True).sum() / 2**20
    finally:
        new.close()
        old.close()
    table = Table(title=f"sandbox: per-call overhead on a {ROWS:,}-row frame")
    table.add_column("measure")
    table.add_column("p50 ms", justify="right")
    table.add_column("p90 ms", justify="right")
    table.add_column("n", justify="right")
    out: dict[str, Any] = {"rows": ROWS, "target_ratio": TARGET_RATIO, "measures": {}}
    for label, samples in [*rows.items(), ("run(): allow-list, 1,000 calls", long_run["samples"])]:
        p50 = statistics.median(samples)
        p90 = sorted(samples)[int(len(samples) * 0.9)]
        table.add_row(label, f"{p50:.2f}", f"{p90:.2f}", str(len(samples)))
        out["measures"][label] = {"p50_ms": round(p50, 3), "p90_ms": round(p90, 3)}
    p50_new = statistics.median(calls["allow-list"])
    p50_old = statistics.median(calls["deny-list (before)"])
    ratio = p50_new / p50_old
    out.update(
        p50_allow_list_ms=round(p50_new, 3),
        p50_deny_list_ms=round(p50_old, 3),
        ratio=round(ratio, 3),
        meets_target=ratio <= TARGET_RATIO,
        parent_modules={"allow-list": new.info["modules"], "deny-list": old.info["modules"]},
        parent_rss_mib={"allow-list": new.info["rss_mib"], "deny-list": old.info["rss_mib"]},
        frame_mib=round(frame_mib, 1),
        parent_rss_before_mib=round(before, 1),
        parent_rss_after_mib=round(long_run["rss_mib"], 1),
    )
    console = Console()
    console.print(table)
    console.print(
        f"allow-list sandbox p50 {p50_new:.2f} ms vs deny-list {p50_old:.2f} ms: "
        f"ratio {ratio:.3f} (target ≤ {TARGET_RATIO}: "
        f"{'met' if out['meets_target'] else 'MISSED'}); "
        f"parents: {new.info['modules']} vs {old.info['modules']} modules, "
        f"{new.info['rss_mib']:.0f} vs {old.info['rss_mib']:.0f} MiB RSS"
    )
    console.print(
        f"frame {frame_mib:.1f} MiB; parent RSS {before:.1f} → {long_run['rss_mib']:.1f} MiB over "
        "1,000 runs (the frame is shared by fork, not copied)"
    )
    return out


if __name__ == "__main__":
    if sys.argv[1:2] == ["--parent"]:
        _parent(sys.argv[2])
    else:
        main()
