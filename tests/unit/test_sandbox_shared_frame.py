"""A frame handed to a child through a sealed memfd comes back as the frame it was.

The child builds its DataFrame over the mapping without pandas' inference (it
costs copied pages in every child), so these check that what it builds is what
``pd.DataFrame(columns, copy=False)`` builds: the same dtypes, the same `str`
labels, one block per column, and no copy of the data.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

from strategyq.sandbox.shared_frame import attach, share

PY_STR = pd.StringDtype("python", na_value=np.nan)
PY_STRING = pd.StringDtype("python", na_value=pd.NA)


def _frame(rows: int) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "ticker": pd.array(["AAA", "BBB"] * (rows // 2), dtype="str"),
            # Python-backed, as the loader makes the strategy's ticker: travels
            # dictionary-encoded, missing values included.
            "symbol": pd.array(["AAA", "BBB"] * (rows // 2), dtype=PY_STR),
            "venue": pd.array(["x", None] * (rows // 2), dtype=PY_STR),
            "note": pd.array(["x", None] * (rows // 2), dtype=PY_STRING),
            "name": pd.array(["x", None] * (rows // 2), dtype="string"),
            "sector": pd.Series(["tech", None] * (rows // 2), dtype=object),
            "date": pd.date_range("2024-01-01", periods=rows, unit="us"),
            "close": np.linspace(10.0, 20.0, rows),
            "volume": np.arange(rows, dtype="int64"),
            "flag": np.arange(rows) % 3 == 0,
            "ratio": np.ones(rows, dtype="float32"),
        }
    )
    for i in range(5):
        frame[f"sma_{i}"] = np.linspace(i, i + 1.0, rows)
    return frame


def _reference(frame: pd.DataFrame) -> pd.DataFrame:
    """What the child built before: ``DataFrame(dict of the columns, copy=False)``."""
    columns = {str(name): frame[name].to_numpy() for name in frame.columns}
    columns["ticker"] = frame["ticker"].array
    for name in ("name", "symbol", "venue", "note"):
        columns[name] = frame[name].array
    return pd.DataFrame(columns, index=pd.RangeIndex(len(frame)), copy=False)


@pytest.mark.parametrize("rows", [0, 2, 1000])
def test_attached_frame_is_the_frame_dataframe_would_build(rows: int) -> None:
    frame = _frame(rows)
    shared = share(frame)
    try:
        got = attach(os.dup(shared.fd))
    finally:
        shared.close()
    want = _reference(frame)
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert got.columns.dtype == want.columns.dtype == pd.StringDtype("pyarrow", na_value=np.nan)
    assert got.dtypes.to_dict() == want.dtypes.to_dict()
    # The object column of strings is inferred as DataFrame(dict) infers it (an empty
    # one stays object).
    sector = pd.StringDtype("pyarrow", na_value=np.nan) if rows else np.dtype(object)
    assert got["sector"].dtype == sector
    assert got["name"].dtype == pd.StringDtype("pyarrow", na_value=pd.NA)
    assert got["symbol"].dtype == got["venue"].dtype == PY_STR
    assert got["note"].dtype == PY_STRING
    # Not consolidated: one block per column, as with copy=False.
    assert len(got._mgr.blocks) == len(got.columns)


def test_numeric_columns_are_views_of_the_mapping_and_writes_stay_private() -> None:
    frame = _frame(100)
    shared = share(frame)
    try:
        first = attach(os.dup(shared.fd))
        close = first["close"].to_numpy()
        assert not close.flags.owndata  # a view of the mapping, not a copy
        first.loc[0, "close"] = -1.0
        second = attach(os.dup(shared.fd))
    finally:
        shared.close()
    # The memfd is sealed and the mapping private: another child sees the original.
    assert second["close"].iloc[0] == frame["close"].iloc[0]
    pd.testing.assert_frame_equal(second, _reference(frame), check_exact=True)


def test_a_python_backed_column_comes_back_with_one_object_per_distinct_string() -> None:
    frame = _frame(1000)
    shared = share(frame)
    try:
        got = attach(os.dup(shared.fd))
    finally:
        shared.close()
    symbols = got["symbol"].to_numpy()
    # No string made per row: each row points at its value's one object, as the
    # loader's column does.
    assert len({id(value) for value in symbols}) == 2
    assert symbols.tolist() == frame["symbol"].tolist()
    venues = got["venue"].to_numpy()
    assert venues[0] == "x" and venues[1] is np.nan
    assert got["note"].isna().tolist() == frame["note"].isna().tolist() == [False, True] * 500
