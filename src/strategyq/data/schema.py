"""Column names, types and ticker rules shared by the store, the importers and the loader."""

from __future__ import annotations

import re
from datetime import date, datetime

import pyarrow as pa

from strategyq.errors import DataError

PRICE_COLUMNS = ("open", "high", "low", "close")
"""Prices a bar must have, each finite and positive."""

VALUE_COLUMNS = (*PRICE_COLUMNS, "volume", "adj_factor")
"""The numeric columns of a stored bar, in file order."""

STORE_SCHEMA = pa.schema(
    [
        ("ticker", pa.dictionary(pa.int32(), pa.string())),
        ("date", pa.date32()),
        *[(name, pa.float64()) for name in VALUE_COLUMNS],
    ]
)
"""The schema of every Parquet file in the store; rows sorted by (ticker, date)."""

INDICATOR_COLUMNS = (
    "returns",
    "log_returns",
    "gap",
    "gap_pct",
    "volume_sma",
    "volume_ratio",
    "sma_5",
    "sma_10",
    "sma_20",
    "sma_50",
    "sma_200",
    "ema_12",
    "ema_26",
    "macd",
    "macd_signal",
    "macd_histogram",
    "rsi",
    "true_range",
    "atr",
    "bb_middle",
    "bb_upper",
    "bb_lower",
    "bb_width",
    "bb_position",
    "price_position",
)
"""The indicator columns of a loaded frame, in frame order (formulas in docs/data.md)."""

FRAME_COLUMNS = ("ticker", "date", *VALUE_COLUMNS, *INDICATOR_COLUMNS)
"""Every column of the strategy DataFrame, in order."""

SYNTHETIC_PREFIX = "SYN"
_SYNTHETIC = re.compile(r"^SYN\d{4,}$")
_TICKER = re.compile(r"^[A-Z0-9][A-Z0-9.\-^=_/]{0,23}$")

EPOCH = date(1970, 1, 1)


def normalize_ticker(raw: str) -> str:
    """Return the stored spelling of a ticker: stripped and upper-case."""
    return raw.strip().upper()


def ticker_problem(ticker: str) -> str | None:
    """Return why ``ticker`` cannot be stored, or None when it is acceptable."""
    if not _TICKER.match(ticker):
        return (
            f"ticker {ticker!r} is not valid: use 1-24 characters A-Z, 0-9 and . - ^ = _ /, "
            "starting with a letter or digit"
        )
    if is_synthetic(ticker):
        return (
            f"ticker {ticker!r} is reserved for synthetic data (SYN followed by digits); "
            "rename it or use `strategyq data synth`"
        )
    return None


def is_synthetic(ticker: str) -> bool:
    """True for the reserved synthetic names ``SYN0001``, ``SYN0002``, …"""
    return bool(_SYNTHETIC.match(ticker))


def synthetic_ticker(index: int) -> str:
    """The name of the ``index``-th synthetic symbol, counting from 1."""
    return f"{SYNTHETIC_PREFIX}{index:04d}"


def session_date(value: date | datetime | str) -> date:
    """The session date a start/end bound refers to (its calendar date, as given)."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return datetime.fromisoformat(value.strip().replace("Z", "+00:00")).date()
    except ValueError:
        raise DataError(f"{value!r} is not a date; write it as YYYY-MM-DD") from None


def to_days(value: date) -> int:
    """Days since 1970-01-01 (the integer behind Arrow's date32)."""
    return (value - EPOCH).days


def from_days(days: int) -> date:
    """The date ``days`` after 1970-01-01."""
    return date.fromordinal(EPOCH.toordinal() + int(days))
