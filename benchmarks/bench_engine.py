"""Engine speed: trade simulation + metrics on synthetic universes.

Targets: 10,000 trades over 100 symbols × 2 years ≤ 20 ms; 100,000 trades over
1,000 symbols × 10 years ≤ 500 ms; 100,000 trades closed by exit signals over
1,000 symbols × 10 years ≤ 1.2× the 100,000 hold-days trades measured in the
same run (the yardstick: every signal trades and exits after ``hold_days``,
the model before exits existed). Frames and signals are generated here with
numpy (names ``SYN0000``…); each number is the median of several runs.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from strategyq.engine import TradeModel, normalize_instances, run_backtest
from strategyq.engine.market import market_from_frame
from strategyq.engine.outcome import simulate_and_measure
from strategyq.engine.signals import signal_columns

CASES = (
    # name, symbols, sessions, signals, target_ms, max_positions
    ("10k sig, 100×2y", 100, 504, 10_000, 20.0, 1_000),
    ("10k sig, 100×2y, 10 slots", 100, 504, 10_000, 20.0, 10),
    ("100k sig, 1000×10y", 1_000, 2_520, 100_000, 500.0, 10_000),
    ("100k sig, 1000×10y, 10 slots", 1_000, 2_520, 100_000, 500.0, 10),
)
MODEL = {
    "hold_days": 5,
    "stop_loss_pct": 4.0,
    "take_profit_pct": 8.0,
    "commission_bps": 5.0,
    # Every signal trades, overlapping or not: the hold-days model as it was before exits.
    "max_entries_per_ticker": 0,
}
EXIT_MODEL = {"stop_loss_pct": 4.0, "take_profit_pct": 8.0, "commission_bps": 5.0}
EXIT_RATIO_TARGET = 1.2


def synthetic_frame(symbols: int, sessions: int, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    days = pd.bdate_range("2014-01-02", periods=sessions).values
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, (symbols, sessions)), axis=1))
    open_ = close * np.exp(rng.normal(0, 0.01, close.shape))
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.02, close.shape))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.02, close.shape))
    names = np.array([f"SYN{i:04d}" for i in range(symbols)])
    return pd.DataFrame(
        {
            "ticker": np.repeat(names, sessions),
            "date": np.tile(days, symbols),
            "open": open_.ravel(),
            "high": high.ravel(),
            "low": low.ravel(),
            "close": close.ravel(),
            "volume": rng.integers(1_000, 100_000, close.size).astype(np.float64),
        }
    )


def synthetic_instances(df: pd.DataFrame, count: int, seed: int = 11) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(df), count)
    tickers = df["ticker"].to_numpy()[rows].tolist()
    dates = df["date"].to_numpy()[rows].astype("datetime64[D]").astype(str).tolist()
    scores = rng.random(count).round(4).tolist()
    return [
        {"ticker": t, "date": d, "signal": True, "score": s}
        for t, d, s in zip(tickers, dates, scores, strict=True)
    ]


def exit_instances(df: pd.DataFrame, trades: int, seed: int = 13) -> list[dict[str, Any]]:
    """``trades`` entry/exit pairs: per ticker, random sessions taken in turn as entry, exit."""
    rng = np.random.default_rng(seed)
    tickers = df["ticker"].to_numpy()
    dates = df["date"].to_numpy().astype("datetime64[D]").astype(str)
    starts = np.flatnonzero(np.r_[True, tickers[1:] != tickers[:-1]])
    ends = np.r_[starts[1:], len(df)]
    per_ticker = trades // len(starts)
    out: list[dict[str, Any]] = []
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        rows = np.sort(rng.choice(np.arange(start, end - 1), 2 * per_ticker, replace=False))
        for k, row in enumerate(rows.tolist()):
            instance = {"ticker": tickers[row], "date": dates[row], "score": float(k % 7)}
            if k % 2:
                instance["action"] = "exit"
            out.append(instance)
    return out


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, value = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        value = fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), value


def run_case(
    symbols: int,
    sessions: int,
    signals: int,
    slots: int,
    repeat: int,
    exits: bool = False,
    df: pd.DataFrame | None = None,
) -> dict[str, Any]:
    df = synthetic_frame(symbols, sessions) if df is None else df
    raw = exit_instances(df, signals) if exits else synthetic_instances(df, signals)
    model = TradeModel(max_positions=slots, **(EXIT_MODEL if exits else MODEL))
    prep_ms, market = timed(lambda: market_from_frame(df), repeat)
    norm_ms, normalized = timed(lambda: normalize_instances(raw), max(1, repeat // 3))
    cols = signal_columns(normalized, market)
    model = model.resolved(normalized.has_exits)

    def core() -> tuple[int, dict[str, Any]]:
        outcome = simulate_and_measure(
            market, cols.codes, cols.days, cols.short, cols.scores, model, exits=cols.exits
        )
        return len(outcome.taken), outcome.metrics

    core_ms, (trades, _) = timed(core, repeat)
    total_ms, _ = timed(
        lambda: run_backtest(normalized, df, model, start=None, end=None), max(1, repeat // 2)
    )
    return {
        "rows": len(df),
        "signals": len(raw),
        "trades": trades,
        "frame_to_arrays_ms": round(prep_ms, 2),
        "sim_metrics_ms": round(core_ms, 2),
        "run_backtest_ms": round(total_ms, 2),
        "normalize_ms": round(norm_ms, 2),
    }


def main() -> dict[str, Any]:
    """Run every case, print one table, return the numbers."""
    results: dict[str, Any] = {}
    table = Table(title="engine: simulation + metrics (median ms)")
    for column in ("case", "rows", "trades", "sim+metrics", "target", "frame→arrays",
                   "run_backtest*", "normalize"):  # fmt: skip
        table.add_column(column, justify="left" if column == "case" else "right")
    for name, symbols, sessions, signals, target, slots in CASES:
        repeat = 15 if symbols <= 100 else 5
        row = run_case(symbols, sessions, signals, slots, repeat)
        row["target_ms"] = target
        row["meets_target"] = row["sim_metrics_ms"] <= target
        results[name] = row
        mark = "[green]✓[/]" if row["meets_target"] else "[red]✗[/]"
        table.add_row(
            name, f"{row['rows']:,}", f"{row['trades']:,}", f"{row['sim_metrics_ms']:.1f} {mark}",
            f"≤ {target:.0f}", f"{row['frame_to_arrays_ms']:.1f}", f"{row['run_backtest_ms']:.1f}",
            f"{row['normalize_ms']:.1f}",
        )  # fmt: skip
    # Exits against the hold-days yardstick, interleaved on one frame so both see the same machine.
    big = synthetic_frame(1_000, 2_520)
    pairs: dict[str, list[float]] = {"hold": [], "exits": []}
    rows: dict[str, dict[str, Any]] = {}
    for _ in range(3):
        rows["hold"] = run_case(1_000, 2_520, 100_000, 10_000, 3, df=big)
        rows["exits"] = run_case(1_000, 2_520, 100_000, 10_000, 3, exits=True, df=big)
        for key in pairs:
            pairs[key].append(rows[key]["sim_metrics_ms"])
    hold_ms, exit_ms = statistics.median(pairs["hold"]), statistics.median(pairs["exits"])
    ratio = exit_ms / hold_ms
    for key, name in (("hold", "100k hold-days trades (yardstick)"), ("exits", "100k exit trades")):
        row = {**rows[key], "sim_metrics_ms": round(statistics.median(pairs[key]), 2)}
        results[name] = row
    results["exits_vs_hold_days"] = {
        "ratio": round(ratio, 3),
        "target_ratio": EXIT_RATIO_TARGET,
        "meets_target": ratio <= EXIT_RATIO_TARGET,
    }
    mark = "[green]✓[/]" if ratio <= EXIT_RATIO_TARGET else "[red]✗[/]"
    table.add_row(
        "100k hold-days trades, 1000×10y", f"{big.shape[0]:,}", f"{rows['hold']['trades']:,}",
        f"{hold_ms:.1f}", "yardstick", f"{rows['hold']['frame_to_arrays_ms']:.1f}",
        f"{rows['hold']['run_backtest_ms']:.1f}", f"{rows['hold']['normalize_ms']:.1f}",
    )  # fmt: skip
    table.add_row(
        "100k exit-signal trades, 1000×10y", f"{big.shape[0]:,}", f"{rows['exits']['trades']:,}",
        f"{exit_ms:.1f} ({ratio:.2f}× {mark})", f"≤ {EXIT_RATIO_TARGET}×",
        f"{rows['exits']['frame_to_arrays_ms']:.1f}", f"{rows['exits']['run_backtest_ms']:.1f}",
        f"{rows['exits']['normalize_ms']:.1f}",
    )  # fmt: skip
    console = Console(width=max(Console().width, 110))
    console.print(table)
    console.print(
        "run_backtest* = whole call on pre-normalised instances (frame flattening, simulation, "
        "metrics, JSON building, trade list capped at 10,000)"
    )
    return results


if __name__ == "__main__":
    main()
