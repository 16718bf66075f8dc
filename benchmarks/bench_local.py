"""A local run, ``strategyq.backtest(...)``, beside backtesting.py's ``Backtest.run()``.

``python -m benchmarks local``. The sample data (AAPL 2000–2013) in a temporary
``STRATEGYQ_HOME``; one SMA crossover (fast 10, slow 20; enter at the next open
when the fast average crosses above the slow one, leave at the next open when
it crosses back; long only, all equity in) on both, in one run:

- strategyq warm: the wall time of ``strategyq.backtest(...)`` from the call to
  the ``Result``, the second and later calls of one process (the executor, its
  sandbox host and the data cache are warm; every call still forks a fresh
  locked-down child and runs the strategy's pandas in it);
- strategyq cold: the same call as the first line of a fresh ``python``,
  imports and the executor's start included;
- backtesting.py: ``Backtest.run()`` on the same bars (the ``Backtest`` built
  before the clock starts).

Target: warm ≤ 1.5 × backtesting.py. Medians of several runs; the load average
is printed beside them.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks.bench_sweep import CROSS, aapl_frame
from strategyq.data import load_sample

TARGET = 1.5
RUNS = 9
ARGS: dict[str, Any] = {"params": {"fast": 10, "slow": 20}, "hold_days": None,
                        "max_positions": 1}  # fmt: skip
RANGE = (["AAPL"], "2000-01-01", "2013-12-31")

COLD = f"""
import time
started = time.perf_counter()
import strategyq
result = strategyq.backtest({CROSS!r}, {RANGE[0]!r}, {RANGE[1]!r}, {RANGE[2]!r}, **{ARGS!r})
elapsed = time.perf_counter() - started
assert result.ok, result.raw
print(elapsed)
"""


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _median(times: list[float]) -> float:
    return statistics.median(times)


def main() -> dict[str, Any]:
    console = Console()
    home = Path(tempfile.mkdtemp(prefix="strategyq-bench-local-"))
    os.environ["STRATEGYQ_HOME"] = str(home)
    load_sample(home / "data")
    try:
        return _measure(console, home)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _measure(console: Console, home: Path) -> dict[str, Any]:
    import strategyq.local as local

    load_before = _load()
    cold = float(
        subprocess.run(
            [sys.executable, "-c", COLD], env=os.environ.copy(), capture_output=True, text=True,
            check=True, timeout=300,
        ).stdout.split()[-1]
    )  # fmt: skip
    with local.LocalSession() as session:
        first = session.backtest(CROSS, *RANGE, **ARGS)
        assert first.ok, first.raw
        ours = []
        for _ in range(RUNS):
            started = time.perf_counter()
            result = session.backtest(CROSS, *RANGE, **ARGS)
            ours.append(time.perf_counter() - started)
    trades_ours = int(result.metrics["num_trades"])

    os.environ.setdefault("TQDM_DISABLE", "1")
    from backtesting import Backtest

    from benchmarks.btpy_strategy import SmaCross

    frame = aapl_frame(home)
    theirs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bt = Backtest(frame, SmaCross, cash=100_000, commission=0.0, exclusive_orders=True,
                      finalize_trades=True)  # fmt: skip
        for _ in range(RUNS):
            started = time.perf_counter()
            stats = bt.run(fast=10, slow=20)
            theirs.append(time.perf_counter() - started)
    trades_theirs = int(stats["# Trades"])
    load_after = _load()

    warm, btpy = _median(ours), _median(theirs)
    ratio = warm / btpy
    table = Table(title=f"local backtest, AAPL 2000–2013 ({len(frame):,} bars), SMA 10/20")
    for column in ("run", "wall time", "× backtesting.py", "trades"):
        table.add_column(column, justify="right" if column != "run" else "left")
    table.add_row("strategyq.backtest, warm (median)", f"{warm * 1000:.1f} ms",
                  f"{ratio:.2f}", str(trades_ours))  # fmt: skip
    table.add_row("strategyq.backtest, cold (imports + executor)", f"{cold * 1000:.0f} ms",
                  f"{cold / btpy:.1f}", "")  # fmt: skip
    table.add_row("backtesting.py Backtest.run() (median)", f"{btpy * 1000:.1f} ms", "1.00",
                  str(trades_theirs))  # fmt: skip
    console.print(table)
    verdict = "met" if ratio <= TARGET else "MISSED"
    console.print(
        f"warm ≤ {TARGET} × backtesting.py: {verdict} ({ratio:.2f}); load average "
        f"{load_before} before, {load_after} after; {os.cpu_count()} cores"
    )
    return {
        "warm_s": warm, "cold_s": cold, "backtesting_py_run_s": btpy,
        "warm_over_backtesting_py": ratio, "target": TARGET, "met": ratio <= TARGET,
        "trades_strategyq": trades_ours, "trades_backtesting_py": trades_theirs,
        "runs": RUNS, "load_before": load_before, "load_after": load_after,
        "warm_all_s": ours, "backtesting_py_all_s": theirs,
    }  # fmt: skip
