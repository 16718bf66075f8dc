"""A single backtest's answer as rows against as columns, each stage timed in-process.

``python -m benchmarks columns``. The SMA 10/50 cross (``CROSS``, the large
backtest's strategy) on ``STRATEGYQ_BENCH_COLUMNS_SYMBOLS`` (1,000) synthetic
symbols × ``STRATEGYQ_BENCH_COLUMNS_YEARS`` (20) years, on the frame a sandbox
child sees (a shared frame, ``ticker`` an Arrow-backed ``str`` column). Its
returned DataFrame goes through each stage of a backtest task after the
strategy's own call, both ways, rounds interleaved:

- **rows** (the yardstick: the only form before): the child encodes one JSON
  object per row (``encode_rows``), the executor decodes them into dicts and
  ``run_backtest`` normalises them one dict at a time;
- **columns**: the child encodes the columns (``encode_result``), the executor
  decodes them into one list per column and ``run_backtest`` reads them
  column-wise (``column_instances``).

Both give the same result, byte for byte (checked here). The ratios are
columns / rows, from the same run, with the load average printed.
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
from rich.console import Console
from rich.table import Table

from benchmarks.bench_sweep import CROSS
from strategyq.data import MarketData, write_synthetic
from strategyq.engine import TradeModel, market_from_frame, run_backtest
from strategyq.engine.warmup import leave_out_warmup
from strategyq.executor.run.backtest import engine_instances
from strategyq.executor.run.context import ENGINE_BARS
from strategyq.sandbox import result
from strategyq.sandbox.shared_frame import attach, share

SYMBOLS = int(os.environ.get("STRATEGYQ_BENCH_COLUMNS_SYMBOLS", "1000"))
YEARS = float(os.environ.get("STRATEGYQ_BENCH_COLUMNS_YEARS", "20"))
ROUNDS = int(os.environ.get("STRATEGYQ_BENCH_COLUMNS_ROUNDS", "3"))
PARAMS = {"fast": 10, "slow": 50}
MODEL = TradeModel.from_args({"hold_days": None, "max_positions": 10})
MAX_INSTANCES = 10_000


def _compile(code: str, name: str) -> Any:
    scope: dict[str, Any] = {"np": np, "pd": pd}
    exec(compile(code, name, "exec"), scope)
    return scope[name]


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def main() -> dict[str, Any]:
    console = Console(width=120)
    strategy = _compile(CROSS, "sma_cross_strategy")
    with tempfile.TemporaryDirectory(prefix="strategyq-bench-columns-") as tmp:
        console.print(f"writing {SYMBOLS:,} synthetic symbols x {YEARS:g} years …")
        summary = write_synthetic(Path(tmp), SYMBOLS, YEARS, seed=5)
        data = MarketData(Path(tmp))
        tickers = data.tickers()
        start = dt.datetime.combine(summary.first, dt.time())
        end = dt.datetime.combine(summary.last, dt.time())
        loaded = data.load(tickers, start, end, indicators=False)
        bars = data.load(tickers, start, end, indicators=False, bar_columns=ENGINE_BARS)
        market = market_from_frame(bars.frame)
        shared = share(loaded.frame)
        del loaded
        try:
            frame = attach(os.dup(shared.fd))
        finally:
            shared.close()

    value = strategy(frame.copy(deep=False), dict(PARAMS))
    answers = {"rows": result.encode_rows, "columns": result.encode_result}

    def engine(decoded: Any) -> bytes:
        payload = run_backtest(
            engine_instances(decoded), market, MODEL, start=start, end=end,
            max_instances=MAX_INSTANCES, max_trades=MAX_INSTANCES,
        )  # fmt: skip
        return orjson.dumps(leave_out_warmup(payload, start))

    stages = ("encode (child)", "decode (executor)", "run_backtest (executor)")
    times: dict[str, dict[str, list[float]]] = {
        path: {s: [] for s in (*stages, "total")} for path in answers
    }
    strategy_s: list[float] = []
    sizes: dict[str, int] = {}
    reports: dict[str, bytes] = {}
    for _ in range(ROUNDS):
        elapsed, _value = _timed(lambda: strategy(frame.copy(deep=False), dict(PARAMS)))
        strategy_s.append(elapsed)
        for path, encode in answers.items():
            encode_s, message = _timed(lambda encode=encode: encode(value))
            decode_s, (decoded, _logs) = _timed(
                lambda message=message: result.decode_answer(message, keep_columns=True)
            )
            engine_s, report = _timed(lambda decoded=decoded: engine(decoded))
            sizes[path] = len(message)
            reports[path] = report
            del message, decoded
            for stage, seconds in zip(stages, (encode_s, decode_s, engine_s), strict=True):
                times[path][stage].append(seconds)
            times[path]["total"].append(encode_s + decode_s + engine_s)
    assert reports["rows"] == reports["columns"], "both paths must give the same result"
    med = {p: {s: statistics.median(v) for s, v in by.items()} for p, by in times.items()}
    load = os.getloadavg()
    signal_rows = len(value)
    table = Table(
        title=(
            f"SMA 10/50 backtest, {SYMBOLS:,} symbols x {YEARS:g} y ({len(frame):,} rows, "
            f"{signal_rows:,} signal rows); median of {ROUNDS}; load {load[0]:.2f} "
            f"{load[1]:.2f} {load[2]:.2f}"
        )
    )
    for column in ("stage", "rows (yardstick)", "columns", "columns / rows"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for stage in (*stages, "total"):
        rows_s, cols_s = med["rows"][stage], med["columns"][stage]
        table.add_row(stage, f"{rows_s:.2f} s", f"{cols_s:.2f} s", f"{cols_s / rows_s:.2f} x")
    table.add_row(
        "answer size", f"{sizes['rows'] / 2**20:.1f} MiB", f"{sizes['columns'] / 2**20:.1f} MiB",
        f"{sizes['columns'] / sizes['rows']:.2f} x",
    )  # fmt: skip
    table.add_row("strategy call (both)", f"{statistics.median(strategy_s):.2f} s", "", "")
    console.print(table)
    return {
        "symbols": SYMBOLS,
        "years": YEARS,
        "frame_rows": len(frame),
        "signal_rows": signal_rows,
        "median_s": med,
        "samples_s": times,
        "strategy_s": strategy_s,
        "answer_bytes": sizes,
        "load": load,
    }
