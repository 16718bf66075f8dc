"""Market bars as flat numpy arrays, grouped by ticker.

The frame arrives sorted by (ticker, date) with one row per session. Every
lookup the engine makes ("the session of this signal", "the next session") is
a ``searchsorted`` on one sorted int64 key, ``ticker_code << 32 | day``, so a
whole batch of signals is placed in one call.
"""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa

from strategyq.engine.jsonvalues import date_to_day
from strategyq.errors import DataError

REQUIRED_COLUMNS = ("ticker", "date", "open", "high", "low", "close")
DAY_SHIFT = np.int64(1 << 32)
DAY_BIAS = np.int64(1 << 30)
"""Added to days before packing so dates before 1970 keep the key order."""

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Market:
    """Bars of one or more tickers, flattened; rows of ticker ``k`` are ``starts[k]:ends[k]``.

    Attributes:
        symbols: tickers in sorted order; a row's ticker code indexes this list.
        starts, ends: each ticker's first row and one past its last row.
        day: each row's date as days since 1970-01-01.
        key: each row's ``code << 32 | (day + bias)``; sorted ascending.
        code: each row's ticker code.
    """

    symbols: list[str]
    starts: IntArray
    ends: IntArray
    code: IntArray
    day: IntArray
    key: IntArray
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray

    @property
    def rows(self) -> int:
        return len(self.day)

    def code_of(self) -> dict[str, int]:
        """Ticker → code."""
        return {symbol: i for i, symbol in enumerate(self.symbols)}

    def pack(self, codes: IntArray, days: IntArray) -> IntArray:
        """The search key of (ticker code, day) pairs."""
        packed: IntArray = codes * DAY_SHIFT + (days + DAY_BIAS)
        return packed

    def calendar(self) -> IntArray:
        """Every day on which at least one ticker has a session, ascending."""
        if self.rows == 0:
            return np.zeros(0, dtype=np.int64)
        low = int(self.day.min())
        present = np.bincount(self.day - low) > 0
        days: IntArray = np.flatnonzero(present).astype(np.int64) + low
        return days

    def window(self, start: dt.date | None, end: dt.date | None) -> Market:
        """The rows dated within [start, end] (both inclusive, either open)."""
        if start is None and end is None:
            return self
        mask = np.ones(self.rows, dtype=bool)
        if start is not None:
            mask &= self.day >= date_to_day(start)
        if end is not None:
            mask &= self.day <= date_to_day(end)
        if mask.all():
            return self
        code = self.code[mask]
        counts = np.bincount(code, minlength=len(self.symbols))
        keep = counts > 0
        remap = np.cumsum(keep) - 1
        ends = np.cumsum(counts[keep]).astype(np.int64)
        new_code = remap[code].astype(np.int64)
        day = self.day[mask]
        return Market(
            symbols=[s for s, k in zip(self.symbols, keep.tolist(), strict=True) if k],
            starts=ends - counts[keep],
            ends=ends,
            code=new_code,
            day=day,
            key=new_code * DAY_SHIFT + (day + DAY_BIAS),
            open=self.open[mask],
            high=self.high[mask],
            low=self.low[mask],
            close=self.close[mask],
        )


def as_market(bars: pd.DataFrame | Market) -> Market:
    """``bars`` itself when it is already a :class:`Market`, else :func:`market_from_frame`."""
    return bars if isinstance(bars, Market) else market_from_frame(bars)


def market_from_frame(df: pd.DataFrame) -> Market:
    """Flatten a (ticker, date)-sorted bar frame; an unsorted frame is sorted first.

    Build it once and pass the Market to ``run_backtest``/``run_screening`` to
    reuse it for several runs on the same bars.

    Raises:
        DataError: a required column is missing, or a (ticker, date) repeats.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(
            f"market data lacks column(s) {', '.join(missing)}; "
            f"the engine needs {', '.join(REQUIRED_COLUMNS)}"
        )
    if len(df) == 0:
        empty_i = np.zeros(0, dtype=np.int64)
        empty_f = np.zeros(0, dtype=np.float64)
        return Market([], empty_i, empty_i, empty_i, empty_i, empty_i, *([empty_f] * 4))
    ticker = df["ticker"]
    runs = _sorted_runs(ticker)
    if runs is not None:
        first, symbols = runs
    else:
        # factorize works on integer codes (Arrow-backed strings never become Python
        # objects), which matters on frames of millions of rows.
        codes, uniques = pd.factorize(ticker, sort=False)
        if bool((codes < 0).any()):
            row = int(np.flatnonzero(codes < 0)[0])
            raise DataError(f"market data row {row} has no ticker; every row needs one")
        first = np.empty(len(codes), dtype=bool)
        first[0] = True
        np.not_equal(codes[1:], codes[:-1], out=first[1:])
        symbols = [str(s) for s in np.asarray(uniques, dtype=object)[codes[np.flatnonzero(first)]]]
    day = _days(df["date"])
    starts = np.flatnonzero(first)
    ordered = all(a < b for a, b in itertools.pairwise(symbols))
    step = np.diff(day)
    if not ordered or not bool(np.all((step > 0) | first[1:])):
        order = np.lexsort((day, ticker.astype(str).to_numpy()))
        if not ordered or bool(np.any(np.diff(order) < 0)):
            return market_from_frame(df.iloc[order].reset_index(drop=True))
        raise DataError(_duplicate_message(df, day, first))
    prices = (_floats(df["open"]), _floats(df["high"]), _floats(df["low"]), _floats(df["close"]))
    return _market_of_runs(symbols, starts, day, prices)


def market_from_sorted_columns(
    ticker: pa.Array,
    date_ns: npt.NDArray[np.datetime64],
    prices: tuple[FloatArray, FloatArray, FloatArray, FloatArray],
) -> Market | None:
    """The Market of columns already sorted by (ticker, date), one row per session,
    as :func:`market_from_frame` builds it from the same rows, bit for bit; None
    when they are not (the caller builds it from a frame instead).

    ``ticker``: an Arrow string array without nulls, or a dictionary array of
    strings (each ticker's rows are found by comparing neighbours in C, with no
    Python object per row: the strings, or the codes); ``date_ns``:
    datetime64[ns]; ``prices``: open, high, low, close (used as they are, not copied).
    """
    import pyarrow.compute as pc

    rows = len(ticker)
    if rows == 0 or ticker.null_count or len(date_ns) != rows:
        return None
    if any(len(p) != rows or p.dtype != np.float64 for p in prices):
        return None
    first = np.empty(rows, dtype=bool)
    first[0] = True
    if isinstance(ticker, pa.DictionaryArray):
        # Equal codes are equal strings; a dictionary that repeats a string gives two
        # runs of one name, which the sortedness check below turns away.
        codes = ticker.indices.to_numpy()
        np.not_equal(codes[1:], codes[:-1], out=first[1:])
    else:
        differ = pc.not_equal(ticker.slice(1), ticker.slice(0, rows - 1))
        first[1:] = differ.to_numpy(zero_copy_only=False)
    starts = np.flatnonzero(first)
    symbols = [str(s) for s in ticker.take(pa.array(starts)).to_pylist()]
    if any(a >= b for a, b in itertools.pairwise(symbols)):
        return None
    day: IntArray = date_ns.astype("datetime64[D]").astype(np.int64)
    if not bool(np.all((np.diff(day) > 0) | first[1:])):
        return None
    return _market_of_runs(symbols, starts, day, prices)


def _market_of_runs(
    symbols: list[str],
    starts: npt.NDArray[np.intp],
    day: IntArray,
    prices: tuple[FloatArray, FloatArray, FloatArray, FloatArray],
) -> Market:
    """The Market of rows sorted by (ticker, date) whose tickers' runs begin at ``starts``."""
    ends = np.append(starts[1:], len(day)).astype(np.int64)
    code = np.repeat(np.arange(len(starts), dtype=np.int64), ends - starts)
    open_, high, low, close = prices
    return Market(
        symbols=symbols,
        starts=starts.astype(np.int64),
        ends=ends,
        code=code,
        day=day,
        key=code * DAY_SHIFT + (day + DAY_BIAS),
        open=open_,
        high=high,
        low=low,
        close=close,
    )


def _sorted_runs(ticker: pd.Series) -> tuple[npt.NDArray[np.bool_], list[str]] | None:
    """Where each ticker's rows start, and the tickers, for a column of Python strings
    sorted by ticker (as the loader makes it); None for any other column.

    Neighbours are compared instead of every row hashed: the loader's rows of one
    ticker share one ``str`` object, so each comparison is an identity check (25 M
    rows: under a second, where factorizing them takes seven).
    """
    dtype = ticker.dtype
    if isinstance(dtype, pd.CategoricalDtype) or (
        isinstance(dtype, pd.StringDtype) and dtype.storage != "python"
    ):
        return None  # factorize reads these as codes without a Python object per row
    values = ticker.to_numpy()
    if values.dtype != object:
        return None
    first = np.empty(len(values), dtype=bool)
    first[0] = True
    np.not_equal(values[1:], values[:-1], out=first[1:])
    names = values[first].tolist()
    # A missing ticker (None, NaN) or an unsorted column takes the general path.
    if not all(type(n) is str for n in names) or any(a >= b for a, b in itertools.pairwise(names)):
        return None
    return first, names


def _days(column: pd.Series) -> IntArray:
    values = column
    if not pd.api.types.is_datetime64_any_dtype(values):
        values = pd.to_datetime(values, format="mixed")
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        values = values.dt.tz_localize(None)
    days: IntArray = values.to_numpy().astype("datetime64[D]").astype(np.int64)
    return days


def _floats(column: pd.Series) -> FloatArray:
    values: FloatArray = column.to_numpy(dtype=np.float64, na_value=np.nan)
    return values


def _duplicate_message(df: pd.DataFrame, day: IntArray, first: npt.NDArray[np.bool_]) -> str:
    repeat = int(np.flatnonzero((np.diff(day) == 0) & ~first[1:])[0]) + 1
    when = pd.Timestamp(df["date"].iloc[repeat]).date().isoformat()
    return (
        f"market data has two rows for {df['ticker'].iloc[repeat]} on {when}; "
        "keep one row per (ticker, session)"
    )
