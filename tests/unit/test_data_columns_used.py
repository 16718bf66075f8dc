"""Indicators computed only when the strategy can read them.

``indicators_used`` reads the strategy's source: the frame's columns it names
through constant keys, or ``None`` (every indicator) when the frame reaches
code that could read any column. The loader then computes just those, with
the very values of the full frame.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from strategyq.data import MarketData
from strategyq.data.columns_used import indicators_used
from strategyq.data.schema import INDICATOR_COLUMNS, VALUE_COLUMNS
from strategyq.errors import DataError
from strategyq.examples import source

NAMED = {
    "constant keys": (
        "def s(df):\n"
        "    up = df['close'] > df['sma_50']\n"
        "    return df.loc[up & (df.rsi < 30), ['ticker', 'date']]\n",
        ("sma_50", "rsi"),
    ),
    "groupby then a column": (
        "def s(df, params):\n"
        "    m = df.groupby('ticker')['atr'].transform('mean')\n"
        "    x = m.groupby(df['ticker']).shift(1)\n"
        "    return df[['ticker', 'date']][x > 1]\n",
        ("atr",),
    ),
    "no indicator at all": (
        "def s(df):\n    n = len(df)\n    c = df['close'].to_numpy()\n"
        "    return df[['ticker', 'date']].iloc[:n][c > 1]\n",
        (),
    ),
    "helpers get series only": (
        "def _z(x):\n    return (x - x.mean()) / x.std()\n\n"
        "def s(df):\n    z = _z(df['volume_ratio'])\n"
        "    return df.loc[z > 2, ['ticker', 'date']]\n",
        ("volume_ratio",),
    ),
}

EVERY = {
    "rows of the whole frame": "def s(df):\n    return df[df.close > df.sma_20]\n",
    "a name built at run time": "def s(df, params):\n    return df[f\"sma_{params['n']}\"]\n",
    "a variable key": "def s(df):\n    col = 'sma_' + '20'\n    return df[col]\n",
    "the frame passed on": "def _f(x):\n    return x\n\ndef s(df):\n    return _f(df)\n",
    "a method on the frame": "def s(df):\n    return df.tail(5)\n",
    "columns listed": "def s(df):\n    return [c for c in df.columns]\n",
    "getattr": "def s(df):\n    return getattr(df, 'rsi')\n",
    "itertuples": "def s(df):\n    return [r for r in df.itertuples()]\n",
    "a class": "class S:\n    def run(self, df):\n        return df['close']\n",
    "groupby by a variable": "def s(df):\n    k = 'rsi'\n    return df.groupby(k)['c'].mean()\n",
    "does not parse": "def s(df:\n",
    "a typo, whose error lists every column": "def s(df):\n    return df['gap_percent'] > 1\n",
    "a column it added": "def s(df):\n    df['x'] = df['close'] * 2\n    return df['x']\n",
}


@pytest.mark.parametrize("name", list(NAMED))
def test_columns_named_by_constants(name: str) -> None:
    code, expected = NAMED[name]
    assert indicators_used(code) == expected


@pytest.mark.parametrize("name", list(EVERY))
def test_any_other_use_of_the_frame_asks_for_every_indicator(name: str) -> None:
    assert indicators_used(EVERY[name]) is None


def test_the_shipped_examples() -> None:
    assert indicators_used(source("sma_params")) == ()
    assert indicators_used(source("sma_grid")) == ()
    assert indicators_used(source("sma_cross")) == ("sma_20", "sma_50")
    # The gap-up screen returns rows of the frame itself: every column, as before.
    assert indicators_used(source("gap_up")) is None


@pytest.mark.parametrize(
    "names", [["sma_200"], ["bb_width", "returns"], ["rsi", "atr", "macd_signal"], []]
)
def test_a_subset_has_the_full_frames_values(data_sample_root: Path, names: list[str]) -> None:
    args = (["AAPL", "IBM", "MSFT"], date(2010, 1, 4), date(2011, 6, 30))
    full = MarketData(data_sample_root, cache_mb=0).load(*args).frame
    part = MarketData(data_sample_root, cache_mb=0).load(*args, indicators=names).frame
    wanted = [c for c in INDICATOR_COLUMNS if c in names]
    assert list(part.columns) == ["ticker", "date", *VALUE_COLUMNS, *wanted]
    pd.testing.assert_frame_equal(part, full[list(part.columns)])
    assert np.isfinite(part[wanted].to_numpy()).any() or not wanted


def test_an_unknown_indicator_name_is_refused(data_sample_root: Path) -> None:
    with pytest.raises(DataError, match="not indicator columns: sma_7"):
        MarketData(data_sample_root).load(["AAPL"], date(2010, 1, 4), date(2010, 2, 1),
                                          indicators=["sma_7"])  # fmt: skip
