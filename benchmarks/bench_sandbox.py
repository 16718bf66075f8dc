"""Sandbox overhead per call: fork, lock-down, small result, reap, on a 50k-row frame.

Also shows the frame is shared, not copied (the parent's RSS stays flat over
1,000 runs), and what each part costs.
"""

from __future__ import annotations

import logging
import os
import statistics
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from benchmarks.timing import timed
from strategyq.sandbox import run, warm_up
from strategyq.sandbox import seccomp as sandbox_seccomp
from strategyq.settings import SandboxLimits

ROWS = 50_000
SMALL = "def strategy(df):\n    return [{'ticker': 'AAA', 'rows': len(df)}]\n"
TARGET_P50_MS = 8.0


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


def main() -> dict[str, Any]:
    logging.getLogger("strategyq.sandbox.runner").setLevel(logging.ERROR)
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(name, "1")
    warm_up()
    df = _frame()
    limits = SandboxLimits(time_limit_s=10, memory_mb=1024)
    for _ in range(20):
        run(SMALL, df, limits)

    rows: dict[str, list[float]] = {}
    rows["bare fork + exit + wait (floor)"] = timed(_bare_fork, 300)
    rows["run(): no Landlock/seccomp"] = timed(
        lambda: run(SMALL, df, limits, insecure_no_sandbox=True), 300
    )
    rows["run(): full sandbox (precompiled BPF)"] = timed(lambda: run(SMALL, df, limits), 300)
    rows["compile seccomp BPF with libseccomp"] = timed(
        lambda: sandbox_seccomp.export_bpf(sandbox_seccomp.build_filter()), 50
    )

    rss_before = _rss_mib()
    long_run = timed(lambda: run(SMALL, df, limits), 1000)
    rss_after = _rss_mib()
    frame_mib = df.memory_usage(deep=True).sum() / 2**20

    table = Table(title=f"sandbox: per-call overhead on a {ROWS:,}-row frame")
    table.add_column("measure")
    table.add_column("p50 ms", justify="right")
    table.add_column("p90 ms", justify="right")
    table.add_column("n", justify="right")
    out: dict[str, Any] = {"rows": ROWS, "target_p50_ms": TARGET_P50_MS, "measures": {}}
    for label, samples in [*rows.items(), ("run(): full sandbox, 1,000 calls", long_run)]:
        p50 = statistics.median(samples)
        p90 = sorted(samples)[int(len(samples) * 0.9)]
        table.add_row(label, f"{p50:.2f}", f"{p90:.2f}", str(len(samples)))
        out["measures"][label] = {"p50_ms": round(p50, 3), "p90_ms": round(p90, 3)}
    p50_full = statistics.median(long_run)
    out.update(
        p50_ms=round(p50_full, 3),
        meets_target=p50_full <= TARGET_P50_MS,
        frame_mib=round(frame_mib, 1),
        parent_rss_before_mib=round(rss_before, 1),
        parent_rss_after_mib=round(rss_after, 1),
        parent_rss_growth_mib=round(rss_after - rss_before, 1),
    )
    console = Console()
    console.print(table)
    console.print(
        f"full sandbox p50 {p50_full:.2f} ms (target ≤ {TARGET_P50_MS:g} ms: "
        f"{'met' if out['meets_target'] else 'MISSED'}); frame {frame_mib:.1f} MiB; parent RSS "
        f"{rss_before:.1f} → {rss_after:.1f} MiB over 1,000 runs (the frame is shared by fork, "
        "not copied)"
    )
    console.print(
        "run() forks on demand. A child forked before its task arrives must already hold "
        "the task's frame, so the workers' fork server (strategyq.sandbox.forkserver) forks "
        "the next child ahead of time only for the frame just used; its effect shows in "
        "make bench-e2e "
        f"(fork floor above: {statistics.median(rows['bare fork + exit + wait (floor)']):.2f} ms)."
    )
    return out


if __name__ == "__main__":
    main()
