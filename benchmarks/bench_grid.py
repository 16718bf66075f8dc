"""The executor's sweep work, per combination vs one whole-grid call, beside vectorbt.

``python -m benchmarks grid``. The 10 × 10 SMA-crossover grid on AAPL 2000–2013
(the sample), in this process: the strategy calls plus the engine's metrics of
every combination, as a sweep chunk does after the sandbox child answers, without
the queue and the child. "per combination" calls ``f(df, params)`` 100 times
and simulates every combination at once (``backtest_metrics_many``); "whole
grid" calls ``f(df, grid)`` once, splits its rows by combination (for the
best's full backtest) and reads the whole answer into signal arrays in one pass
(``backtest_metrics_grid``, as a chunk does); "whole grid, a read per
combination" reads each combination's split columns instead (as chunks did
before); "whole grid, engine one by one" is the whole-grid call with one
``backtest_metrics`` per combination. All give the same metrics (checked
here). vectorbt runs the same grid warm (signals vectorised, filled at the next
open), in the same run, rounds interleaved.

The child's side alone: the whole-grid call and its answer's encoding on the
frame a sandbox child builds (over a shared frame, ``ticker`` the loader's
Python-backed ``str`` column), and on the same frame with ``ticker`` as a Categorical (Python
``str`` categories), which the child does not use: it breaks string idioms
(``docs/performance.md``).
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from benchmarks.bench_sweep import CROSS, FAST, SLOW, vectorbt_time
from strategyq.data import MarketData, load_sample
from strategyq.engine import (
    backtest_metrics,
    backtest_metrics_grid,
    backtest_metrics_many,
    market_from_frame,
)
from strategyq.executor.run.sweep import COMBINATION, _by_combination
from strategyq.sandbox import result
from strategyq.sandbox.shared_frame import attach, share
from strategyq.trademodel import TradeModel

GRID_CROSS = """
def sma_cross_grid(df, grid):
    # CROSS for every combination at once: each window's mean is computed once.
    tickers = df["ticker"].to_numpy()
    n = len(tickers)
    first = np.ones(n, dtype=bool)
    first[1:] = tickers[1:] != tickers[:-1]
    rows = np.arange(n)
    pos = rows - np.maximum.accumulate(np.where(first, rows, 0))
    close = df["close"]
    means = {w: close.rolling(int(w)).mean().to_numpy()
             for w in set(grid["fast"]) | set(grid["slow"])}
    index, entry, exit_, combo = [], [], [], []
    for i, (f, s) in enumerate(zip(grid["fast"], grid["slow"])):
        above = means[f] > means[s]
        before = np.concatenate([[False], above[:-1]])
        ready = pos >= int(s)
        cross_up = ready & above & ~before
        cross_down = ready & ~above & before
        rows_i = np.flatnonzero(cross_up | cross_down)
        index.append(rows_i)
        entry.append(cross_up[rows_i])
        exit_.append(cross_down[rows_i])
        combo.append(np.full(len(rows_i), i))
    index = np.concatenate(index)
    out = df[["ticker", "date"]].take(index).reset_index(drop=True)
    out["entry"] = np.concatenate(entry)
    out["exit"] = np.concatenate(exit_)
    out["combination"] = np.concatenate(combo)
    return out
"""

START, END = dt.datetime(2000, 1, 1), dt.datetime(2013, 12, 31)


def _compile(code: str, name: str) -> Any:
    scope: dict[str, Any] = {"np": np, "pd": pd}
    exec(compile(code, name, "exec"), scope)
    return scope[name]


def main() -> dict[str, Any]:
    combos = [{"fast": f, "slow": s} for f in FAST for s in SLOW]
    grid = {"fast": [c["fast"] for c in combos], "slow": [c["slow"] for c in combos]}
    per_combo = _compile(CROSS, "sma_cross_strategy")
    whole = _compile(GRID_CROSS, "sma_cross_grid")
    model = TradeModel(max_positions=1)
    with tempfile.TemporaryDirectory(prefix="strategyq-bench-grid-") as tmp:
        load_sample(Path(tmp))
        frame = MarketData(Path(tmp)).load(["AAPL"], START, END, warmup_sessions=0).frame
        bars = (
            MarketData(Path(tmp))
            .load(["AAPL"], START, END, warmup_sessions=0, indicators=False)
            .frame
        )
    market = market_from_frame(bars)
    shared = share(frame)
    try:
        child_frame = attach(os.dup(shared.fd))
    finally:
        shared.close()
    names = pd.Index(
        pd.array(
            sorted(set(child_frame["ticker"])), dtype=pd.StringDtype("python", na_value=np.nan)
        )
    )
    categorical_frame = child_frame.assign(
        ticker=child_frame["ticker"].astype(pd.CategoricalDtype(names))
    )
    vbt_frame = bars.set_index("date").rename(columns=str.capitalize)

    def travel(value: Any) -> Any:
        # As a sandbox child's answer: encoded, decoded, kept as columns.
        return result.decode(result.encode_runs([value]), keep_columns=True)[0]

    models = [model] * len(combos)

    def run_per_combo() -> list[dict[str, Any]]:
        outs = [travel(per_combo(frame.copy(deep=False), dict(c))) for c in combos]
        columns = [o.columns for o in outs]
        return backtest_metrics_many(columns, market, models, start=START, end=END)

    def run_grid() -> list[dict[str, Any]]:
        answer = travel(whole(frame.copy(deep=False), grid))
        _by_combination(answer, len(combos))  # checked, and the best's rows
        rest = {k: v for k, v in answer.columns.items() if k != COMBINATION}
        got = backtest_metrics_grid(
            rest, answer.columns[COMBINATION], market, models, start=START, end=END
        )
        assert got is not None
        return got

    def run_grid_read_each() -> list[dict[str, Any]]:
        split = _by_combination(travel(whole(frame.copy(deep=False), grid)), len(combos))
        columns = [o.columns for o in split]
        return backtest_metrics_many(columns, market, models, start=START, end=END)

    def run_grid_one_by_one() -> list[dict[str, Any]]:
        split = _by_combination(travel(whole(frame.copy(deep=False), grid)), len(combos))
        return [backtest_metrics(o.columns, market, model, start=START, end=END) for o in split]

    def child_str() -> bytes:
        return result.encode_runs([whole(child_frame.copy(deep=False), grid)])

    def child_categorical() -> bytes:
        return result.encode_runs([whole(categorical_frame.copy(deep=False), grid)])

    same = run_per_combo()
    assert same == run_grid() == run_grid_read_each() == run_grid_one_by_one(), (
        "every path must give the same metrics"
    )
    assert child_categorical() == child_str(), "the same answer on either ticker column"
    runs = (
        ("per combination", run_per_combo),
        ("whole grid", run_grid),
        ("whole grid, a read per combination", run_grid_read_each),
        ("whole grid, engine one by one", run_grid_one_by_one),
        ("child: grid call + encoding (ticker str)", child_str),
        ("same, ticker Categorical (not used)", child_categorical),
    )
    times: dict[str, list[float]] = {name: [] for name, _ in runs}
    times["vectorbt"] = []
    rounds = int(os.environ.get("GRID_ROUNDS", "5"))
    for _ in range(rounds):
        for name, fn in runs:
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
        times["vectorbt"].append(vectorbt_time(vbt_frame))
    med = {k: statistics.median(v) for k, v in times.items()}
    load = os.getloadavg()[0]
    table = Table(
        title=f"10 x 10 SMA cross, AAPL 2000-2013, in-process; median of {rounds} (load {load:.2f})"
    )
    for column in ("run", "ms", "vectorbt / this", "ms per combination"):
        table.add_column(column, justify="left" if column == "run" else "right")
    for name, value in med.items():
        table.add_row(name, f"{value * 1000:.0f}", f"{med['vectorbt'] / value:.2f}x",
                      f"{value * 1000 / len(combos):.2f}")  # fmt: skip
    Console(width=120).print(table)
    return {"median_s": med, "samples_s": times, "load": load, "combinations": len(combos)}
