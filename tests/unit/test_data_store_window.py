"""``Store.read`` with a window returns exactly the sessions a whole read then a slice would."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strategyq.data import store as store_module
from strategyq.data.schema import VALUE_COLUMNS, to_days
from strategyq.data.store import Store, Window
from strategyq.data.synth import synthetic_bars


@pytest.fixture(scope="module")
def small_groups_store(tmp_path_factory: pytest.TempPathFactory) -> Store:
    # Row groups much smaller than a ticker's history, so tickers span several groups
    # and windows skip whole groups.
    root = tmp_path_factory.mktemp("window-store")
    saved = store_module.ROW_GROUP_ROWS
    store_module.ROW_GROUP_ROWS = 97
    try:
        store = Store(root)
        store.upsert(synthetic_bars(7, 2.0, seed=3))
    finally:
        store_module.ROW_GROUP_ROWS = saved
    return store


def _expected(store: Store, tickers: list[str], window: Window) -> dict[str, np.ndarray]:
    """Per ticker, the row positions a whole read keeps under ``window``, by plain Python."""
    whole = store.read(tickers)
    out = {}
    for i, t in enumerate(whole.tickers):
        lo, hi = int(whole.offsets[i]), int(whole.offsets[i + 1])
        days = whole.dates[lo:hi].tolist()
        end = sum(1 for d in days if window.last is None or d <= window.last)
        if window.lookback is not None:
            begin = max(end - window.lookback, 0)
        else:
            begin = sum(1 for d in days if window.first is not None and d < window.first)
        if end <= begin:
            out[t] = np.arange(0)
        else:
            out[t] = np.arange(lo + max(begin - window.before, 0), lo + end)
    return out


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    pick=st.lists(st.integers(0, 6), min_size=1, max_size=7, unique=True),
    first=st.one_of(st.none(), st.integers(-40, 800)),
    span=st.one_of(st.none(), st.integers(0, 400)),
    before=st.integers(0, 300),
    lookback=st.one_of(st.none(), st.integers(1, 600)),
)
def test_window_read_equals_whole_read_then_slice(
    small_groups_store: Store,
    pick: list[int],
    first: int | None,
    span: int | None,
    before: int,
    lookback: int | None,
) -> None:
    store = small_groups_store
    names = sorted(store.manifest().tickers)
    tickers = [names[i] for i in pick]
    origin = min(e.first for e in store.manifest().tickers.values())
    base = to_days(origin)
    lo = None if first is None else base + first
    hi = None if span is None else (base if lo is None else lo) + span
    window = Window(first=lo, last=hi, before=before, lookback=lookback)
    got = store.read(tickers, window=window)
    whole = store.read(tickers)
    expected = _expected(store, tickers, window)
    assert got.tickers == whole.tickers
    assert got.lengths.tolist() == [len(expected[t]) for t in got.tickers]
    index = np.concatenate([expected[t] for t in got.tickers])
    np.testing.assert_array_equal(got.dates, whole.dates[index])
    for col in VALUE_COLUMNS:
        np.testing.assert_array_equal(got.values[col], whole.values[col][index])


def test_a_short_window_returns_only_its_sessions_and_warm_up(small_groups_store: Store) -> None:
    store = small_groups_store
    ticker = sorted(store.manifest().tickers)[0]
    entry = store.manifest().tickers[ticker]
    last = to_days(entry.last)
    got = store.read([ticker], window=Window(first=last - 30, last=last, before=5))
    assert got.rows == 5 + int(((got.dates >= last - 30) & (got.dates <= last)).sum())
    assert got.rows < entry.rows / 10
