"""Fixtures for the market data tests (named ``data_*``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from strategyq.data import MarketData, load_sample
from strategyq.data.bars import Bars
from strategyq.data.schema import VALUE_COLUMNS
from strategyq.data.store import Store


def bars_from_frame(frame: pd.DataFrame) -> Bars:
    """Bars from rows with ticker, date, open, high, low, close, volume[, adj_factor]."""
    frame = frame.copy()
    if "adj_factor" not in frame:
        frame["adj_factor"] = 1.0
    frame["date"] = pd.to_datetime(frame["date"])
    frame = frame.sort_values(["ticker", "date"])
    tickers, counts = np.unique(frame["ticker"].astype(str).to_numpy(), return_counts=True)
    return Bars(
        tickers=[str(t) for t in tickers],
        lengths=counts.astype(np.int64),
        dates=frame["date"].to_numpy().astype("datetime64[D]").astype(np.int64).astype(np.int32),
        values={c: frame[c].to_numpy(dtype=np.float64) for c in VALUE_COLUMNS},
    )


@pytest.fixture
def data_market(tmp_path: Path) -> Callable[[pd.DataFrame], MarketData]:
    """Store the given rows in a fresh store; return its MarketData (cache off)."""

    def make(frame: pd.DataFrame) -> MarketData:
        root = tmp_path / "store"
        Store(root).upsert(bars_from_frame(frame))
        return MarketData(root, cache_mb=0)

    return make


@pytest.fixture(scope="session")
def data_sample_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding the bokeh-sampledata Quandl WIKI sample (read-only for tests)."""
    root = tmp_path_factory.mktemp("sample") / "data"
    load_sample(root)
    return root


# Escape-attempt traps shared by the sandbox corpus tests (both runners).
from tests.unit.sandbox_traps import traps, victim, warmed  # noqa: E402, F401
