"""Many signal sets simulated at once give, bit for bit, each set's single backtest metrics.

``backtest_metrics_many`` is what a sweep chunk calls; ``backtest_metrics`` what
a single backtest reports. Each case below runs random signal sets through
both and compares the metric dicts with ``==`` (floats included), over trade
models that take every path of the batched engine: one slot (the chain), many
slots with and without overlapping trades, stops, trailing stops, close
entries and exits, a per-ticker limit, shorts, and sets it hands to the single
path (scores, weights, no trade at all).
"""

from __future__ import annotations

import datetime as dt
import zlib
from typing import Any

import numpy as np
import pandas as pd
import pytest

from strategyq.engine import (
    backtest_metrics,
    backtest_metrics_grid,
    backtest_metrics_many,
    batch,
    market_from_frame,
)
from strategyq.engine.columnar import column_signals
from strategyq.engine.market import Market
from strategyq.engine.metrics import curve_metrics_rows, performance_metrics, trade_metrics_rows
from strategyq.engine.signals import columns_from
from strategyq.trademodel import TradeModel

TICKERS = ["AAA", "BBB", "CCC", "DDD", "EEE", "FFF"]
START, END = dt.datetime(2020, 3, 2), dt.datetime(2021, 3, 31)


def _bars(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2020-01-01", periods=320)
    parts = []
    for i, ticker in enumerate(TICKERS):
        # Listings of different lengths, so the calendar has sessions a ticker lacks.
        days = dates[i * 7 : len(dates) - i * 3]
        close = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, len(days))))
        open_ = close * np.exp(rng.normal(0, 0.01, len(days)))
        high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.02, len(days)))
        low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.02, len(days)))
        parts.append(
            pd.DataFrame(
                {
                    "ticker": ticker,
                    "date": days,
                    "open": open_,
                    "high": high,
                    "low": low,
                    "close": close,
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def _columns(bars: pd.DataFrame, rng: np.random.Generator, rate: float) -> dict[str, list[Any]]:
    """A random signal set as a sweep chunk's columns: entry and exit flags per row."""
    entry = rng.random(len(bars)) < rate
    exit_ = rng.random(len(bars)) < rate * 1.5
    keep = entry | exit_
    return {
        "ticker": bars["ticker"][keep].tolist(),
        "date": bars["date"][keep].dt.strftime("%Y-%m-%d").tolist(),
        "entry": entry[keep].tolist(),
        "exit": exit_[keep].tolist(),
    }


def _rows(bars: pd.DataFrame, rng: np.random.Generator, extra: str) -> list[dict[str, Any]]:
    """A random signal set as records, with a field that the row path interprets."""
    picked = bars.iloc[np.flatnonzero(rng.random(len(bars)) < 0.03)]
    out = []
    for ticker, day in zip(picked["ticker"], picked["date"], strict=True):
        row: dict[str, Any] = {"ticker": ticker, "date": day.strftime("%Y-%m-%d")}
        if extra == "short":
            row["direction"] = "short" if rng.random() < 0.5 else "long"
        elif extra == "score":
            row["score"] = float(rng.integers(0, 4))
        elif extra == "weight":
            row["weight"] = float(rng.uniform(0.1, 0.6))
        out.append(row)
    return out


MODELS = {
    "one slot, exits": TradeModel(max_positions=1, hold_days=None),
    "one slot, hold 5, stop": TradeModel(max_positions=1, hold_days=5, stop_loss_pct=2.0),
    "three slots, trailing, costs": TradeModel(
        max_positions=3, hold_days=10, trailing_stop_pct=3.0, commission_bps=5, slippage_bps=2
    ),
    "many slots, overlapping": TradeModel(max_positions=50, hold_days=None),
    "close entries and exits, target": TradeModel(
        max_positions=2, hold_days=8, entry="close", exit_on="close", take_profit_pct=4.0
    ),
    "two per ticker": TradeModel(max_positions=10, hold_days=6, max_entries_per_ticker=2),
    "no per-ticker limit": TradeModel(max_positions=4, hold_days=3, max_entries_per_ticker=0),
}


@pytest.fixture(scope="module")
def market() -> tuple[pd.DataFrame, Market]:
    bars = _bars(7)
    return bars, market_from_frame(bars)


def _same(runs: list[Any], market: Market, model: TradeModel) -> None:
    single = [backtest_metrics(r, market, model, start=START, end=END) for r in runs]
    many = backtest_metrics_many(runs, market, [model] * len(runs), start=START, end=END)
    assert len(many) == len(single)
    for i, (a, b) in enumerate(zip(single, many, strict=True)):
        assert a == b, (i, {k: (a[k], b[k]) for k in a if a[k] != b[k]})


@pytest.mark.parametrize("name", list(MODELS))
def test_column_sets_equal_their_single_backtests(
    market: tuple[pd.DataFrame, Market], name: str
) -> None:
    bars, engine_market = market
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    runs: list[Any] = [_columns(bars, rng, rate) for rate in np.linspace(0.003, 0.08, 24)]
    runs.append({"ticker": [], "date": [], "entry": [], "exit": []})  # no trade at all
    _same(runs, engine_market, MODELS[name])
    assert any(m["num_trades"] for m in backtest_metrics_many(
        runs, engine_market, [MODELS[name]] * len(runs), start=START, end=END
    ))  # fmt: skip


@pytest.mark.parametrize("extra", ["short", "score", "weight"])
def test_row_sets_equal_their_single_backtests(
    market: tuple[pd.DataFrame, Market], extra: str
) -> None:
    bars, engine_market = market
    rng = np.random.default_rng(3)
    runs = [_rows(bars, rng, extra) for _ in range(8)]
    for model in (MODELS["one slot, hold 5, stop"], MODELS["three slots, trailing, costs"]):
        _same(runs, engine_market, model)


def test_models_mixed_in_one_call(market: tuple[pd.DataFrame, Market]) -> None:
    """Sets with different trade models (a swept stop) each get their own model."""
    bars, engine_market = market
    rng = np.random.default_rng(11)
    runs = [_columns(bars, rng, 0.02) for _ in range(12)]
    models = [TradeModel(max_positions=1, hold_days=None, stop_loss_pct=s) for s in (2, 5, 9)] * 4
    many = backtest_metrics_many(runs, engine_market, models, start=START, end=END)
    single = [
        backtest_metrics(r, engine_market, m, start=START, end=END)
        for r, m in zip(runs, models, strict=True)
    ]
    assert many == single
    assert len({m["total_return"] for m in many}) > 3


@pytest.mark.parametrize(
    ("name", "share"),
    [("one slot, exits", 1.0), ("many slots, overlapping", 1.0), ("one slot, hold 5, stop", 1.0)],
)
def test_the_batched_path_takes_the_common_sets(
    market: tuple[pd.DataFrame, Market], name: str, share: float
) -> None:
    """The equality above is not the single path compared with itself."""
    bars, engine_market = market
    rng = np.random.default_rng(5)
    window = engine_market.window(START.date(), END.date())
    sets = []
    for rate in np.linspace(0.005, 0.05, 10):
        fast = column_signals(_columns(bars, rng, rate), window, None)
        assert fast is not None
        sets.append(columns_from(fast))
    model = MODELS[name].resolved(True)
    assert len(batch._batched(window, sets, model, None)) >= share * len(sets)


def test_midnight_timestamps_read_as_their_dates(market: tuple[pd.DataFrame, Market]) -> None:
    """Dates that travel as ``YYYY-MM-DDT00:00:00`` give the signals of plain dates."""
    bars, engine_market = market
    plain = _columns(bars, np.random.default_rng(2), 0.03)
    midnight = {**plain, "date": [d + "T00:00:00" for d in plain["date"]]}
    odd = {**plain, "date": [d + "T00:00:00" for d in plain["date"][:-1]] + ["2020-02-30"]}
    got = column_signals(midnight, engine_market, None, {})
    want = column_signals(plain, engine_market, None)
    assert got is not None and want is not None
    assert np.array_equal(got.entry_days, want.entry_days)
    assert np.array_equal(got.exit_days, want.exit_days)
    assert column_signals(odd, engine_market, None) is None  # the row path reports it


def _interleaved(
    runs: list[dict[str, list[Any]]], rng: np.random.Generator
) -> tuple[dict[str, list[Any]], list[int]]:
    """The runs' rows in one set of columns, shuffled together, and each row's run.

    Each run's rows keep their order (a whole-grid strategy's answer may interleave
    combinations, but each combination's rows are its instances in order).
    """
    owners = np.concatenate([np.full(len(r["ticker"]), g) for g, r in enumerate(runs)])
    rng.shuffle(owners)
    taken = [0] * len(runs)
    columns: dict[str, list[Any]] = {k: [] for k in runs[0]}
    for g in owners.tolist():
        for k in columns:
            columns[k].append(runs[g][k][taken[g]])
        taken[g] += 1
    return columns, owners.tolist()


@pytest.mark.parametrize("name", ["one slot, exits", "one slot, hold 5, stop", "two per ticker"])
def test_one_answer_read_at_once_equals_each_runs_single_backtest(
    market: tuple[pd.DataFrame, Market], name: str
) -> None:
    """``backtest_metrics_grid``: a whole-grid answer read in one pass, run by run exact."""
    bars, engine_market = market
    rng = np.random.default_rng(zlib.crc32(name.encode()) + 1)
    runs = [_columns(bars, rng, rate) for rate in np.linspace(0.003, 0.06, 14)]
    # A run with no rows, one with entries only (no exit: its own resolved model), one
    # with an unknown ticker and rows before the start (warm-up), and one with both flags.
    runs.insert(3, {"ticker": [], "date": [], "entry": [], "exit": []})
    only = _columns(bars, rng, 0.02)
    runs.append({**only, "exit": [False] * len(only["exit"])})
    odd = _columns(bars, rng, 0.02)
    odd["ticker"][:3] = ["ZZZ"] * 3
    odd["date"][:5] = ["2020-01-06"] * 5
    runs.append(odd)
    runs.append({**only, "entry": [True] * len(only["entry"]), "exit": [True] * len(only["exit"])})
    columns, owners = _interleaved(runs, rng)
    models = [MODELS[name], TradeModel(max_positions=1, hold_days=4, stop_loss_pct=3.0)] * 10
    models = models[: len(runs)]
    got = backtest_metrics_grid(columns, owners, engine_market, models, start=START, end=END)
    single = [
        backtest_metrics(r, engine_market, m, start=START, end=END)
        for r, m in zip(runs, models, strict=True)
    ]
    assert got is not None
    for i, (a, b) in enumerate(zip(single, got, strict=True)):
        assert a == b, (i, {k: (a[k], b[k]) for k in a if a[k] != b[k]})
    assert sum(m["num_trades"] for m in got) > 20


def test_one_answer_read_at_once_plain_rows_and_the_row_path(
    market: tuple[pd.DataFrame, Market],
) -> None:
    bars, engine_market = market
    rng = np.random.default_rng(4)
    runs = [
        {k: v for k, v in _columns(bars, rng, 0.02).items() if k in ("ticker", "date")}
        for _ in range(5)
    ]
    columns, owners = _interleaved(runs, rng)
    model = TradeModel(max_positions=2, hold_days=5)
    got = backtest_metrics_grid(columns, owners, engine_market, [model] * 5, start=START, end=END)
    assert got == [backtest_metrics(r, engine_market, model, start=START, end=END) for r in runs]
    # Fields read per instance, or a date that does not parse: the caller takes the row path.
    scored = {**columns, "score": [1.0] * len(owners)}
    assert (
        backtest_metrics_grid(scored, owners, engine_market, [model] * 5, start=START, end=END)
        is None
    )
    bad = {**columns, "date": ["2020-02-30", *columns["date"][1:]]}
    assert (
        backtest_metrics_grid(bad, owners, engine_market, [model] * 5, start=START, end=END) is None
    )


def test_trade_metrics_of_many_groups_equal_each_groups_own() -> None:
    """``trade_metrics_rows`` against ``performance_metrics`` one group at a time: groups
    empty, of one trade, odd and even counts, without losses or without wins, long runs."""
    rng = np.random.default_rng(9)
    counts = [0, 1, 2, 3, 7, 8, 9, 16, 130, 257, 5, 0, 4, 4, 600]
    bounds = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    total = int(bounds[-1])
    returns = rng.normal(0.001, 0.03, total) * 10 ** rng.uniform(-3, 1, total)
    returns[bounds[5] : bounds[6]] = np.abs(returns[bounds[5] : bounds[6]])  # no loss
    returns[bounds[6] : bounds[7]] = -np.abs(returns[bounds[6] : bounds[7]])  # no win
    returns[bounds[12] : bounds[13]] = [0.01, -0.02, 0.01, 0.0]  # ties and a zero
    pnl = returns * rng.uniform(1e3, 1e5, total)
    holding = rng.integers(1, 40, total)
    short = np.zeros(total, dtype=bool)
    calendar = np.arange(18_000, 19_200, dtype=np.int64)
    curve = np.linspace(1.0, 1.3, len(calendar)) * 1e5
    exposed = np.ones(len(calendar), dtype=bool)
    groups = [g for g in range(len(counts)) if g != 3]  # one group not wanted
    single = [
        performance_metrics(
            returns=returns[bounds[g] : bounds[g + 1]],
            pnl=pnl[bounds[g] : bounds[g + 1]],
            holding=holding[bounds[g] : bounds[g + 1]],
            calendar=calendar,
            equity=curve * (1 + 0.01 * g),
            exposed=exposed,
            initial_capital=1e5,
            benchmark=0.1,
            short=short[bounds[g] : bounds[g + 1]],
        )
        for g in groups
    ]
    curves = curve_metrics_rows(
        np.array([np.r_[1e5, curve * (1 + 0.01 * g)] for g in groups]),
        calendar,
        np.tile(exposed, (len(groups), 1)),
        1e5,
        0.1,
    )
    rows = trade_metrics_rows(returns, pnl, holding, short, bounds, groups, calendar, curves)
    assert rows is not None
    for g, want, curve_part, trade_part in zip(groups, single, curves, rows, strict=True):
        got = {**curve_part, **trade_part, "alpha": None, "beta": None, "correlation": None}
        assert got == want, (g, {k: (got[k], want[k]) for k in want if got[k] != want[k]})
    # Shorts, or a value that is not finite: one group at a time instead.
    assert (
        trade_metrics_rows(returns, pnl, holding, ~short, bounds, groups, calendar, curves) is None
    )
    pnl[3] = np.inf
    assert (
        trade_metrics_rows(returns, pnl, holding, short, bounds, groups, calendar, curves) is None
    )


def test_sets_measured_against_a_benchmark_ticker_equal_their_single_backtests(
    market: tuple[pd.DataFrame, Market],
) -> None:
    bars, engine_market = market
    rng = np.random.default_rng(13)
    runs = [_columns(bars, rng, rate) for rate in np.linspace(0.005, 0.05, 8)]
    bench = market_from_frame(bars[bars["ticker"] == "CCC"].reset_index(drop=True))
    model = TradeModel(max_positions=1, hold_days=None)
    many = backtest_metrics_many(
        runs, engine_market, [model] * len(runs), start=START, end=END, benchmark=bench
    )
    single = [
        backtest_metrics(r, engine_market, model, start=START, end=END, benchmark=bench)
        for r in runs
    ]
    assert many == single
    assert all(m["beta"] is not None for m in many)
