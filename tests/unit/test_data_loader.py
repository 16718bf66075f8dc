"""Loading: the real sample, ranges, look-back, warm-up, the cache and no look-ahead."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strategyq.data import FRAME_COLUMNS, MarketData, import_files, write_synthetic
from strategyq.data.indicators import Layout, compute
from strategyq.data.schema import VALUE_COLUMNS
from strategyq.errors import DataError


def test_sample_has_real_aapl_history(data_sample_root: Path) -> None:
    market = MarketData(data_sample_root)
    assert market.tickers() == ["AAPL", "FB", "GOOG", "IBM", "MSFT"]
    result = market.load(["AAPL"], date(2000, 3, 1), date(2000, 3, 31))
    frame = result.frame
    assert list(frame.columns) == list(FRAME_COLUMNS)
    assert frame["date"].iloc[0] == pd.Timestamp("2000-03-01")
    assert frame["date"].dtype == np.dtype("M8[ns]") and frame["ticker"].dtype == "str"
    assert isinstance(frame["ticker"].iloc[0], str)
    assert isinstance(frame.index, pd.RangeIndex)
    assert result.ranges["AAPL"] == (date(2000, 3, 1), date(2013, 3, 1))


def test_sample_split_is_not_a_gap_when_adjusted(data_sample_root: Path) -> None:
    market = MarketData(data_sample_root)
    adjusted = market.load(["AAPL"], "2005-02-25", "2005-02-28").frame
    raw = market.load(["AAPL"], "2005-02-25", "2005-02-28", adjusted=False).frame
    assert raw["returns"].iloc[-1] < -0.45  # the 2:1 split on 2005-02-28
    assert abs(adjusted["returns"].iloc[-1]) < 0.05
    assert abs(adjusted["gap_pct"].iloc[-1]) < 5


def test_missing_empty_and_ranges_are_reported(data_sample_root: Path) -> None:
    market = MarketData(data_sample_root)
    result = market.load(["msft", "NOPE", "FB", "MSFT"], date(2011, 1, 3), date(2011, 1, 7))
    assert result.missing == ["NOPE"]
    assert result.empty == ["FB"]
    assert set(result.ranges) == {"MSFT", "FB"}
    assert result.frame["ticker"].unique().tolist() == ["MSFT"]
    assert len(result.frame) == 5
    assert not result.frame["sma_200"].isna().any()  # warmed up on 2010


def test_datetimes_with_time_and_zone_select_whole_sessions(data_sample_root: Path) -> None:
    market = MarketData(data_sample_root)
    start = datetime(2011, 1, 3, 0, 0, tzinfo=UTC)
    frame = market.load(["IBM"], start, "2011-01-07T23:59:59Z").frame
    assert frame["date"].dt.strftime("%Y-%m-%d").tolist()[0] == "2011-01-03"
    assert len(frame) == 5


def test_start_after_end_is_an_error(data_sample_root: Path) -> None:
    with pytest.raises(DataError, match="after end"):
        MarketData(data_sample_root).load(["IBM"], date(2012, 1, 1), date(2011, 1, 1))


def test_lookback_takes_last_sessions_up_to_end(data_sample_root: Path) -> None:
    market = MarketData(data_sample_root)
    result = market.load(["IBM", "FB"], None, date(2012, 12, 31), lookback_sessions=10)
    frame = result.frame
    assert frame.groupby("ticker").size().to_dict() == {"FB": 10, "IBM": 10}
    assert frame["date"].max() == pd.Timestamp("2012-12-31")
    assert not frame[frame["ticker"] == "IBM"]["sma_200"].isna().any()
    assert market.latest_session(["IBM", "nope"]) == date(2013, 3, 1)


def test_warmup_gives_the_same_values_as_full_history(data_sample_root: Path) -> None:
    market = MarketData(data_sample_root, cache_mb=0)
    full = market.load(["GOOG"], None, None, warmup_sessions=0).frame
    cut = market.load(["GOOG"], date(2010, 1, 4), date(2010, 3, 1), warmup_sessions=100_000).frame
    same = full[(full["date"] >= "2010-01-04") & (full["date"] <= "2010-03-01")].reset_index(
        drop=True
    )
    pd.testing.assert_frame_equal(cut, same)


def test_cache_returns_the_same_frame_and_sees_new_imports(tmp_path: Path) -> None:
    root = tmp_path / "store"
    write_synthetic(root, 3, 1, seed=5)
    market = MarketData(root, cache_mb=64)
    one = market.load(["SYN0001", "SYN0002"], None, None)
    two = market.load(["SYN0002", "SYN0001"], None, None)
    assert two is one and two.frame is one.frame
    csv = tmp_path / "x.csv"
    csv.write_text("ticker,date,open,high,low,close,volume\nXYZ,2024-01-02,1,2,1,1,1\n")
    import_files(root, [csv])
    assert market.load(["SYN0001", "SYN0002"], None, None) is not one
    assert "XYZ" in market.tickers()


def test_cache_is_bounded(tmp_path: Path) -> None:
    root = tmp_path / "store"
    write_synthetic(root, 20, 2, seed=5)
    market = MarketData(root, cache_mb=1)  # one 20x2y frame is ~2.6 MB: too big to keep
    first = market.load(["SYN0001"], None, None)
    assert market.load(["SYN0001"], None, None) is first
    big = market.load(market.tickers(), None, None)
    assert market.load(market.tickers(), None, None) is not big
    assert market.cache.used_bytes <= 1024 * 1024


def test_synthetic_universe_is_deterministic(tmp_path: Path) -> None:
    write_synthetic(tmp_path / "a", 12, 1.5, seed=9)
    write_synthetic(tmp_path / "b", 12, 1.5, seed=9)
    write_synthetic(tmp_path / "c", 12, 1.5, seed=10)
    a = MarketData(tmp_path / "a").load(MarketData(tmp_path / "a").tickers(), None, None).frame
    b = MarketData(tmp_path / "b").load(MarketData(tmp_path / "b").tickers(), None, None).frame
    c = MarketData(tmp_path / "c").load(MarketData(tmp_path / "c").tickers(), None, None).frame
    pd.testing.assert_frame_equal(a, b)
    assert not a["close"].equals(c["close"])
    assert a["ticker"].unique().tolist() == [f"SYN{i:04d}" for i in range(1, 13)]
    assert (a["high"] >= a[["open", "close"]].max(axis=1)).all()
    assert (a["low"] <= a[["open", "close"]].min(axis=1)).all()
    assert (a["date"].dt.day_of_week < 5).all()


def _series(values: list[float]) -> dict[str, np.ndarray]:  # type: ignore[type-arg]
    close = np.array(values)
    return {
        "open": close * 0.99, "high": close * 1.02, "low": close * 0.97, "close": close,
        "volume": close * 1000,
    }  # fmt: skip


def _indicators(tickers: list[list[float]]) -> dict[str, list[np.ndarray]]:  # type: ignore[type-arg]
    lengths = np.array([len(t) for t in tickers], dtype=np.int64)
    cols = {k: np.concatenate([_series(t)[k] for t in tickers]) for k in _series([1.0])}
    layout = Layout(lengths)
    out = {}
    for name, grid in compute(
        layout, cols["open"], cols["high"], cols["low"], cols["close"], cols["volume"]
    ):
        out[name] = [grid[i, : lengths[i]].copy() for i in range(len(tickers))]
    return out


prices = st.lists(st.floats(1.0, 1000.0), min_size=2, max_size=260)


@settings(max_examples=40, deadline=None)
@given(series=prices, other=prices, cut=st.integers(0, 259), data=st.data())
def test_changing_future_rows_never_changes_past_values(
    series: list[float], other: list[float], cut: int, data: st.DataObject
) -> None:
    cut = min(cut, len(series) - 1)
    future = data.draw(st.lists(st.floats(1.0, 1000.0), min_size=0, max_size=40))
    changed = series[: cut + 1] + future
    before = _indicators([series, other])
    after = _indicators([changed, other])
    truncated = _indicators([series[: cut + 1], other])
    for name in before:
        np.testing.assert_array_equal(before[name][0][: cut + 1], after[name][0][: cut + 1], name)
        np.testing.assert_array_equal(before[name][0][: cut + 1], truncated[name][0], name)
        np.testing.assert_array_equal(before[name][1], after[name][1], name)


def test_bars_only_frame_matches_the_full_frame(data_sample_root: Path) -> None:
    market = MarketData(data_sample_root)
    full = market.load(["AAPL", "MSFT"], "2010-01-01", "2011-06-30").frame
    bars = market.load(["AAPL", "MSFT"], "2010-01-01", "2011-06-30", indicators=False).frame
    assert list(bars.columns) == ["ticker", "date", *VALUE_COLUMNS]
    pd.testing.assert_frame_equal(full[bars.columns], bars)
    lookback = market.load(["AAPL"], None, "2011-06-30", lookback_sessions=20, indicators=False)
    assert len(lookback.frame) == 20


def test_bars_only_frame_is_adjusted_bit_for_bit(data_sample_root: Path) -> None:
    # Without indicators only the kept rows are adjusted (after the warm-up is cut): the
    # same products as adjusting the whole read first, across AAPL's 2005 split.
    market = MarketData(data_sample_root, cache_mb=0)
    args = (["AAPL", "IBM"], date(2005, 2, 1), date(2005, 3, 31))
    full = market.load(*args, history_sessions=5).frame
    bars = market.load(*args, history_sessions=5, indicators=False).frame
    raw = market.load(*args, history_sessions=5, indicators=False, adjusted=False).frame
    assert (raw["adj_factor"] != 1.0).any()
    for col in VALUE_COLUMNS:
        assert np.array_equal(full[col].to_numpy(), bars[col].to_numpy()), col
    for col in ("open", "high", "low", "close"):
        expected = raw[col].to_numpy() * raw["adj_factor"].to_numpy()
        assert np.array_equal(bars[col].to_numpy(), expected), col
    expected = raw["volume"].to_numpy() / raw["adj_factor"].to_numpy()
    assert np.array_equal(bars["volume"].to_numpy(), expected)
    assert bars["date"].dtype == np.dtype("M8[ns]")
    assert list(bars["date"]) == list(full["date"])


def test_bar_columns_keep_only_the_named_bars_adjusted_alike(data_sample_root: Path) -> None:
    market = MarketData(data_sample_root, cache_mb=64)
    args = (["AAPL", "IBM"], date(2005, 2, 1), date(2005, 3, 31))
    every = market.load(*args, indicators=False).frame
    prices = market.load(*args, indicators=False, bar_columns=["close", "open", "high", "low"])
    assert list(prices.frame.columns) == ["ticker", "date", "open", "high", "low", "close"]
    pd.testing.assert_frame_equal(prices.frame, every[list(prices.frame.columns)], check_exact=True)
    # With indicators the same subset, and a different cache entry from the full frame.
    with_sma = market.load(*args, indicators=["sma_5"], bar_columns=["close", "volume"]).frame
    assert list(with_sma.columns) == ["ticker", "date", "close", "volume", "sma_5"]
    assert np.array_equal(with_sma["volume"].to_numpy(), every["volume"].to_numpy())
    assert market.load(*args, indicators=False).frame is every
    with pytest.raises(DataError, match="not bar columns: vwap"):
        market.load(*args, bar_columns=["close", "vwap"])


def test_history_sessions_keep_rows_before_start(data_sample_root: Path) -> None:
    market = MarketData(data_sample_root, cache_mb=0)
    plain = market.load(["IBM", "FB"], date(2011, 1, 3), date(2011, 1, 7)).frame
    longer = market.load(
        ["IBM", "FB"], date(2011, 1, 3), date(2011, 1, 7), history_sessions=20
    ).frame
    ibm = longer[longer["ticker"] == "IBM"]
    assert len(ibm) == 25 and ibm["date"].iloc[0] < pd.Timestamp("2011-01-03")
    assert (ibm["date"] < pd.Timestamp("2011-01-03")).sum() == 20
    assert "FB" not in set(longer["ticker"])  # no sessions in the range: no history either
    tail = ibm.iloc[20:].reset_index(drop=True)
    pd.testing.assert_frame_equal(tail, plain.reset_index(drop=True))
    # The earliest history rows are warmed up too.
    assert not ibm["sma_200"].isna().any()
    with pytest.raises(DataError, match="history_sessions must be >= 0"):
        market.load(["IBM"], date(2011, 1, 3), date(2011, 1, 7), history_sessions=-1)
