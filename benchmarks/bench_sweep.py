"""Parameter sweeps through the real queue, beside backtesting.py and vectorbt.

``python -m benchmarks sweep``. Uses a private embedded Valkey unless
``REDIS_URL`` is set, the sample data (AAPL 2000–2013) and a synthetic
universe (100 symbols × 2 years) in a temporary ``STRATEGYQ_HOME``.

1. A 10 × 10 SMA-crossover grid with exit signals on AAPL: strategyq (submit
   to completed result, one worker) against backtesting.py's ``optimize`` on
   the same grid and trade rules (enter at the next open when the fast
   average crosses above the slow one, leave at the next open when it crosses
   back, long only, all equity in), and vectorbt's time for the same grid
   (vectorised signals, filled at the next open), all in one run.
2. 1,000 combinations on 100 symbols × 2 years: combinations per minute on one
   worker (one and two executors), and the same sweep on two workers.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import redis
from rich.console import Console
from rich.table import Table

from benchmarks.bench_e2e import cpu_s, descendants
from strategyq import add_sweep_task, wait_for_result
from strategyq.data import MarketData, load_sample, write_synthetic
from strategyq.embedded_valkey import EmbeddedServer

FAST = list(range(5, 55, 5))  # 10 values
SLOW = list(range(20, 220, 20))  # 10 values

CROSS = """
def sma_cross_strategy(df, params):
    # Rolling means over the whole column, kept only where the window lies within one
    # ticker (the frame is sorted by ticker, then date): one pass, no group-by.
    tickers = df["ticker"].to_numpy()
    n = len(tickers)
    first = np.ones(n, dtype=bool)
    first[1:] = tickers[1:] != tickers[:-1]
    rows = np.arange(n)
    pos = rows - np.maximum.accumulate(np.where(first, rows, 0))
    slow_n = int(params["slow"])
    close = df["close"]
    fast = close.rolling(int(params["fast"])).mean().to_numpy()
    slow = close.rolling(slow_n).mean().to_numpy()
    above = fast > slow
    before = np.concatenate([[False], above[:-1]])
    ready = pos >= slow_n
    cross_up = ready & above & ~before
    cross_down = ready & ~above & before
    keep = cross_up | cross_down
    out = df.loc[keep, ["ticker", "date"]]
    out["entry"] = cross_up[keep]
    out["exit"] = cross_down[keep]
    return out
"""


@contextmanager
def workers(
    env: dict[str, str], count: int, concurrency: int, metrics_port: int = 0
) -> Iterator[list[int]]:
    argv = [sys.executable, "-m", "strategyq", "worker", "--metrics-port", str(metrics_port),
            "--concurrency", str(concurrency), "--log-level", "WARNING"]  # fmt: skip
    procs = [
        subprocess.Popen(argv, env={**env, "STRATEGYQ_WORKER_ID": f"bench-sweep-{i}"})
        for i in range(count)
    ]
    try:
        yield [p.pid for p in procs]
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(60)


def wait_workers(client: redis.Redis, count: int) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        alive = sum(
            bool(client.exists(f"strategyq:heartbeat:bench-sweep-{i}")) for i in range(count)
        )
        if alive == count:
            return
        time.sleep(0.05)
    raise RuntimeError("the workers did not start")


def run_sweep(
    client: redis.Redis, symbols: list[str], start: str, end: str, grid: dict[str, list[Any]]
) -> tuple[float, dict[str, Any]]:
    task_id = f"bench-{uuid.uuid4().hex[:8]}"
    started = time.perf_counter()
    add_sweep_task(client, task_id, CROSS, symbols, start, end, grid, maximize="sharpe_ratio",
                   hold_days=None, max_positions=1)  # fmt: skip
    result = wait_for_result(client, task_id, timeout_s=1800)
    elapsed = time.perf_counter() - started
    if result is None or result["status"] != "completed":
        raise RuntimeError(f"sweep {task_id} did not complete: {result}")
    return elapsed, result["data"]


def aapl_frame(home: Path) -> pd.DataFrame:
    loaded = MarketData(home / "data").load(["AAPL"], "2000-01-01", "2013-12-31",
                                             warmup_sessions=0, indicators=False)  # fmt: skip
    frame = loaded.frame.set_index("date")
    return frame.rename(columns=str.capitalize)[["Open", "High", "Low", "Close", "Volume"]]


def backtesting_py(frame: pd.DataFrame) -> tuple[float, dict[str, Any]]:
    os.environ.setdefault("TQDM_DISABLE", "1")  # its progress bars, per bar of each run
    from backtesting import Backtest

    from benchmarks.btpy_strategy import SmaCross

    bt = Backtest(frame, SmaCross, cash=100_000, commission=0.0, exclusive_orders=True,
                  finalize_trades=True)  # fmt: skip
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stats = bt.optimize(fast=FAST, slow=SLOW, maximize="Sharpe Ratio", method="grid")
    elapsed = time.perf_counter() - started
    return elapsed, {"fast": int(stats._strategy.fast), "slow": int(stats._strategy.slow)}


def vectorbt_time(frame: pd.DataFrame) -> float:
    import vectorbt as vbt

    combos = pd.MultiIndex.from_product([FAST, SLOW], names=["fast", "slow"])

    def once(bars: pd.DataFrame) -> Any:
        close = bars["Close"]
        fast = vbt.MA.run(close, window=FAST).ma.to_numpy()
        slow = vbt.MA.run(close, window=SLOW).ma.to_numpy()
        # One column per (fast, slow) combination.
        fast_b = np.repeat(fast, len(SLOW), axis=1)
        slow_b = np.tile(slow, (1, len(FAST)))
        above = fast_b > slow_b
        before = np.vstack([np.zeros((1, above.shape[1]), bool), above[:-1]])
        ready = ~np.isnan(slow_b) & ~np.isnan(np.vstack([slow_b[:1] * np.nan, slow_b[:-1]]))
        entries = pd.DataFrame(ready & above & ~before, index=close.index, columns=combos)
        exits = pd.DataFrame(ready & ~above & before, index=close.index, columns=combos)
        # A signal at a session's close fills at the next session's open, as in the others.
        price = pd.DataFrame(
            np.repeat(bars["Open"].to_numpy()[:, None], len(combos), axis=1),
            index=close.index,
            columns=combos,
        )
        portfolio = vbt.Portfolio.from_signals(
            close, entries.shift(1, fill_value=False), exits.shift(1, fill_value=False),
            price=price, init_cash=100_000, freq="1D",
        )  # fmt: skip
        return portfolio.sharpe_ratio()

    once(frame.iloc[:400])  # numba compiles its functions on the first call
    started = time.perf_counter()
    once(frame)
    return time.perf_counter() - started


def main() -> dict[str, Any]:
    console = Console()
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="strategyq-bench-sweep-") as tmp:
        home = Path(tmp)
        load_sample(home / "data")
        write_synthetic(home / "data", 100, 2, seed=3)
        server = None if os.environ.get("REDIS_URL") else EmbeddedServer(home / "valkey")
        url = os.environ.get("REDIS_URL") or server.ensure_running()  # type: ignore[union-attr]
        client = redis.Redis.from_url(url, decode_responses=True)
        client.flushdb()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "STRATEGYQ_"))}
        env.update(REDIS_URL=url, STRATEGYQ_HOME=str(home), STRATEGYQ_SCHEDULE_INTERVAL="0")
        grid = {"fast": FAST, "slow": SLOW}

        # 1. The 10 × 10 grid on AAPL, one worker with two executors (its optimize uses
        # the machine's two cores too), against backtesting.py and vectorbt.
        with workers(env, 1, 2):
            wait_workers(client, 1)
            run_sweep(client, ["AAPL"], "2000-01-01", "2013-12-31", grid)  # warm the caches
            ours, data = run_sweep(client, ["AAPL"], "2000-01-01", "2013-12-31", grid)
        frame = aapl_frame(home)
        theirs, their_best = backtesting_py(frame)
        vbt = vectorbt_time(frame)
        table = Table(title="10 × 10 SMA-crossover grid with exit signals, AAPL 2000–2013")
        for c in ("engine", "time", "ratio to strategyq", "best (fast, slow)", "target"):
            table.add_column(c)
        best = data["best"]["params"]
        speedup = theirs / ours
        table.add_row("strategyq, 1 worker × 2 executors", f"{ours:.2f} s", "1.00",
                      f"{best['fast']}, {best['slow']}", "—")  # fmt: skip
        table.add_row("backtesting.py optimize (2 processes)", f"{theirs:.2f} s",
                      f"{speedup:.1f}× slower",
                      f"{their_best['fast']}, {their_best['slow']}",
                      f"≥ 5× slower: {'met' if speedup >= 5 else 'NOT met'}")  # fmt: skip
        table.add_row("vectorbt (vectorised, warm)", f"{vbt:.2f} s", f"{vbt / ours:.2f}×", "—", "—")
        console.print(table)
        out["grid_10x10"] = {
            "strategyq_s": ours, "backtesting_py_s": theirs, "vectorbt_s": vbt,
            "backtesting_py_over_strategyq": speedup, "vectorbt_over_strategyq": vbt / ours,
            "best_strategyq": best, "best_backtesting_py": their_best,
        }  # fmt: skip

        # 2. 1,000 combinations on 100 symbols × 2 years.
        symbols = [f"SYN{i:04d}" for i in range(1, 101)]
        last = pd.Timestamp(MarketData(home / "data").latest_session(symbols) or "2024-12-31")
        start = (last - pd.Timedelta(days=730)).date().isoformat()
        big = {"fast": [5, 10, 15, 20, 25, 30, 35, 40, 45, 50],
               "slow": [60, 80, 100, 120, 140, 160, 180, 200, 220, 240],
               "stop_loss_pct": [2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 12.0]}  # fmt: skip
        # The warm-up: 100 combinations, 4 chunks, so that every executor of every
        # configuration has run a chunk (loaded the frame, forked) before the timed sweep.
        warm_grid = {"fast": [5, 10, 15, 20, 25, 30, 35, 40, 45, 50],
                     "slow": [60, 80, 100, 120, 140, 160, 180, 200, 220, 240]}  # fmt: skip
        scale = Table(title="1,000 combinations, 100 symbols × 2 years")
        for c in ("configuration", "time", "combinations / min", "ratio", "CPU s",
                  "cores busy (of 2)", "target"):  # fmt: skip
            scale.add_column(c)
        times: dict[str, float] = {}
        # CPU of the workers' processes (executors, sandbox hosts and children included):
        # how many cores each configuration got, on a machine that may be running other work.
        cpu: dict[str, float] = {}
        for name, count, concurrency in (("1 worker, 1 executor", 1, 1),
                                         ("1 worker, 2 executors", 1, 2),
                                         ("2 workers, 1 executor each", 2, 1)):  # fmt: skip
            with workers(env, count, concurrency) as pids:
                wait_workers(client, count)
                run_sweep(client, symbols, start, last.date().isoformat(), warm_grid)
                used = cpu_s([d for p in pids for d in descendants(p)])
                elapsed, data = run_sweep(client, symbols, start, last.date().isoformat(), big)
                used = cpu_s([d for p in pids for d in descendants(p)]) - used
            assert data["total_combinations"] == 1000
            times[name] = elapsed
            cpu[name] = used
        base = times["1 worker, 1 executor"]
        best_single = min(times["1 worker, 1 executor"], times["1 worker, 2 executors"])
        for name, elapsed in times.items():
            rate = 1000 / elapsed * 60
            ratio = elapsed / base
            target = "—"
            if name == "2 workers, 1 executor each":
                target = f"≤ 0.65× of 1 worker: {'met' if ratio <= 0.65 else 'NOT met'}"
            elif elapsed == best_single:
                target = f"≥ 3,000 / min: {'met' if rate >= 3000 else 'NOT met'}"
            scale.add_row(name, f"{elapsed:.2f} s", f"{rate:,.0f}", f"{ratio:.2f}",
                          f"{cpu[name]:.1f}", f"{cpu[name] / elapsed:.2f}", target)  # fmt: skip
        console.print(scale)
        out["combinations_1000"] = {
            name: {
                "seconds": t,
                "per_minute": 1000 / t * 60,
                "ratio_to_one_worker": t / base,
                "cpu_s": cpu[name],
                "cores_busy": cpu[name] / t,
            }
            for name, t in times.items()
        }
        if server is not None:
            server.stop()
    return out
