"""The strategy frame's Python-backed ``ticker`` column behaves as an Arrow-backed ``str`` one.

Each strategy below is written the way one would for a string column. Run on the frame
as loaded and on the same frame with ``ticker`` cast to the Arrow-backed ``str`` dtype,
it must give the same instances. (A Categorical column fails several of these: ``map``
returns a Categorical, ``max`` and ``<`` need an ordered one.)
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from strategyq.data import MarketData
from strategyq.engine.instances import normalize_instances

Strategy = Callable[[pd.DataFrame], Any]


def _equality(df: pd.DataFrame) -> Any:
    return df[(df["ticker"] == "AAPL") & (df["close"] > df["sma_20"])][["ticker", "date"]]


def _not_equal_and_isin(df: pd.DataFrame) -> Any:
    picked = df[(df.ticker != "MSFT") & df.ticker.isin(["AAPL", "IBM", "NOPE"])]
    return picked.tail(5)[["ticker", "date", "close"]]


def _groupby_last(df: pd.DataFrame) -> Any:
    last = df.groupby("ticker").tail(1)
    best = df.groupby("ticker")["returns"].mean().sort_values().index[-1]
    return [
        {"ticker": t, "date": d, "best": t == best}
        for t, d in zip(last.ticker, last.date, strict=True)
    ]


def _str_accessor(df: pd.DataFrame) -> Any:
    rows = df[df["ticker"].str.startswith("I") | df["ticker"].str.contains("AP")]
    rows = rows.assign(lower=rows["ticker"].str.lower(), size=rows["ticker"].str.len())
    return rows.tail(7)[["ticker", "date", "lower", "size"]]


def _itertuples(df: pd.DataFrame) -> Any:
    out = []
    for row in df.tail(40).itertuples(index=False):
        assert type(row.ticker) is str
        out.append({"ticker": row.ticker + "", "date": row.date, "key": f"{row.ticker}:x"})
    return out


def _merge(df: pd.DataFrame) -> Any:
    sectors = pd.DataFrame({"ticker": ["AAPL", "IBM", "MSFT"], "sector": ["tech", "it", "sw"]})
    merged = df.merge(sectors, on="ticker", how="inner")
    return merged.groupby("ticker").tail(2)[["ticker", "date", "sector"]]


def _map_dict_sort_unique(df: pd.DataFrame) -> Any:
    weights = {"AAPL": 0.5, "IBM": 0.25}
    names = sorted(df["ticker"].unique())
    last = df.groupby("ticker").tail(1).copy()
    last["weight"] = last["ticker"].map(weights).astype(float).fillna(0.1)
    last["rank"] = [names.index(t) for t in last["ticker"].tolist()]
    return last.sort_values("ticker", ascending=False)[["ticker", "date", "weight", "rank"]]


def _numpy_and_sets(df: pd.DataFrame) -> Any:
    tickers = df["ticker"].to_numpy()
    seen = set(tickers.tolist())
    mask = (tickers == "IBM") & (df["gap_pct"].to_numpy() > 0)
    return [
        {"ticker": t, "date": d} for t, d in zip(tickers[mask], df["date"][mask], strict=True)
    ] + [{"ticker": t, "date": df["date"].iloc[-1]} for t in sorted(seen)]


def _map_then_max_and_ordering(df: pd.DataFrame) -> Any:
    codes = {t: i for i, t in enumerate(sorted(df["ticker"].unique()))}
    mapped = df["ticker"].map(codes)
    early = df[df["ticker"] < "B"]
    return [
        {"ticker": df["ticker"].max(), "date": df["date"].iloc[-1], "top": int(mapped.max())},
        {"ticker": df["ticker"].min(), "date": df["date"].iloc[0], "early": len(early)},
    ]


def _concat_and_replace(df: pd.DataFrame) -> Any:
    extra = pd.DataFrame({"ticker": ["ZZZ"], "date": [df["date"].iloc[-1]]})
    both = pd.concat([df[["ticker", "date"]].tail(3), extra], ignore_index=True)
    both["ticker"] = both["ticker"].replace({"IBM": "IBM.N"})
    return both


STRATEGIES = [
    _map_then_max_and_ordering,
    _concat_and_replace,
    _equality,
    _not_equal_and_isin,
    _groupby_last,
    _str_accessor,
    _itertuples,
    _merge,
    _map_dict_sort_unique,
    _numpy_and_sets,
]


@pytest.fixture(scope="module")
def frames(data_sample_root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    frame = (
        MarketData(data_sample_root)
        .load(["AAPL", "IBM", "MSFT"], date(2010, 1, 4), date(2010, 6, 30))
        .frame
    )
    assert frame["ticker"].dtype == "str" and frame["ticker"].dtype.storage == "python"
    arrow = pd.StringDtype("pyarrow", na_value=np.nan)
    as_arrow = frame.assign(ticker=frame["ticker"].astype(arrow))
    assert as_arrow["ticker"].dtype == "str" and as_arrow["ticker"].dtype.storage == "pyarrow"
    return frame, as_arrow


@pytest.mark.parametrize("strategy", STRATEGIES, ids=lambda f: f.__name__.strip("_"))
def test_string_idioms_give_the_same_instances(
    frames: tuple[pd.DataFrame, pd.DataFrame], strategy: Strategy
) -> None:
    python_backed, arrow_backed = frames
    got = normalize_instances(strategy(python_backed.copy()))
    want = normalize_instances(strategy(arrow_backed.copy()))
    assert got.records, "the strategy picks something, so the comparison means something"
    assert got.records == want.records
    assert all(type(t) is str for t in got.tickers)
    assert all(type(r["ticker"]) is str for r in got.records)
