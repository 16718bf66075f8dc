"""A Market built once gives the engine's results the frame gives; the executor memo."""

from __future__ import annotations

import gc
from datetime import date, datetime
from pathlib import Path

import pandas as pd
import pytest

from strategyq.data import MarketData, write_synthetic
from strategyq.engine import TradeModel, market_from_frame, run_backtest, run_screening
from strategyq.errors import DataError
from strategyq.executor.run import context as tasks


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("market-reuse") / "data"
    write_synthetic(root, 6, 1, seed=7)
    return root


def _load(market: MarketData) -> pd.DataFrame:
    tickers = market.tickers()
    return market.load(tickers, None, None, indicators=False).frame


def _instances(df: pd.DataFrame) -> list[dict[str, object]]:
    rows = df.iloc[::17]
    return [
        {"ticker": t, "date": str(d.date()), "score": float(c)}
        for t, d, c in zip(rows["ticker"], rows["date"], rows["close"], strict=True)
    ]


def test_backtest_on_a_market_equals_backtest_on_the_frame(store: Path) -> None:
    df = _load(MarketData(store))
    instances = _instances(df)
    model = TradeModel(hold_days=3, max_positions=2)
    window = {"start": datetime(2024, 3, 1), "end": datetime(2024, 11, 29)}
    on_frame = run_backtest(instances, df, model, **window)
    on_market = run_backtest(instances, market_from_frame(df), model, **window)
    assert on_frame["trades"] and on_frame["performance_metrics"]
    assert on_market["summary"].pop("data_shape") == [len(df), 6]
    on_frame["summary"].pop("data_shape")
    assert on_market == on_frame


def test_screening_on_a_market_equals_screening_on_the_frame(store: Path) -> None:
    df = _load(MarketData(store))
    last = df.groupby("ticker")["date"].max()
    # One ticker ends a session early: stale on the others' last day.
    df = df.drop(index=df.index[(df["ticker"] == last.index[0]) & (df["date"] == last.iloc[0])])
    df = df.reset_index(drop=True)
    universe = [*last.index, "GONE"]
    instances = _instances(df) + [{"ticker": t, "score": 1.0} for t in last.index]
    on_frame = run_screening(instances, df, limit=5, universe=universe)
    on_market = run_screening(instances, market_from_frame(df), limit=5, universe=universe)
    assert on_market == on_frame
    assert on_frame["stale_symbols"] == [last.index[0]]
    assert on_frame["missing_symbols"] == ["GONE"]
    assert on_frame["results_returned"] == 5


def test_the_executor_builds_one_market_per_cached_frame(store: Path) -> None:
    market = MarketData(store)
    tickers = market.tickers()
    first = market.load(tickers[:3], date(2024, 1, 2), date(2024, 6, 28), indicators=False)
    again = market.load(tickers[:3], date(2024, 1, 2), date(2024, 6, 28), indicators=False)
    other = market.load(tickers[3:], date(2024, 1, 2), date(2024, 6, 28), indicators=False)
    assert again is first  # the loader's cache hit
    built = tasks.engine_market(first)
    assert tasks.engine_market(again) is built
    assert tasks.engine_market(other) is not built
    assert built.symbols == sorted(tickers[:3])


def test_the_memo_lets_go_with_the_frame_and_skips_big_ones(
    store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uncached = MarketData(store, cache_mb=0)
    tickers = uncached.tickers()
    loaded = uncached.load(tickers, None, None, indicators=False)
    tasks.engine_market(loaded)
    assert id(loaded) in tasks._markets
    key = id(loaded)
    del loaded
    gc.collect()
    assert key not in tasks._markets

    monkeypatch.setattr(tasks, "MARKET_MEMO_MAX_ROWS", 10)
    big = uncached.load(tickers, None, None, indicators=False)
    assert tasks.engine_market(big) is not tasks.engine_market(big)
    assert id(big) not in tasks._markets


def _same_market(a: object, b: object) -> None:
    for name in ("symbols", "starts", "ends", "code", "day", "key", "open", "close"):
        left, right = getattr(a, name), getattr(b, name)
        assert left == right if isinstance(left, list) else (left == right).all(), name


def test_a_loader_frame_and_its_arrow_copy_make_the_same_market(store: Path) -> None:
    # The loader's Python-string tickers take the neighbour-comparison path; the same
    # frame with Arrow strings, a Categorical or plain objects takes factorize's.
    frame = _load(MarketData(store, cache_mb=0))
    fast = market_from_frame(frame)
    for dtype in ("string[pyarrow]", "category", object):
        other = frame.assign(ticker=frame["ticker"].astype(dtype))
        _same_market(fast, market_from_frame(other))
    # Unsorted rows and a missing ticker are still sorted, or refused, as before.
    shuffled = frame.sample(frac=1.0, random_state=3).reset_index(drop=True)
    _same_market(fast, market_from_frame(shuffled))
    holed = frame.astype({"ticker": object})
    holed.loc[5, "ticker"] = None
    with pytest.raises(DataError, match="row 5 has no ticker"):
        market_from_frame(holed)
