"""Symbol lists as people write them, and the nearest stored names of a missing one.

``expand_symbols`` turns what a user writes after ``--symbols`` / ``--universe``
(or passes to ``strategyq.backtest``) into a list of tickers:

* ``AAPL,MSFT`` or a list: those tickers;
* ``all``: every ticker in the store (sorted);
* ``@FILE``: the tickers in a file, one per line (``#`` starts a comment), or a
  CSV with a header whose ``ticker`` / ``symbol`` column (any case) is read.
"""

from __future__ import annotations

import csv
import difflib
import io
from collections.abc import Iterable, Sequence
from pathlib import Path

from strategyq.data.schema import normalize_ticker
from strategyq.errors import TaskValidationError

_COLUMN_NAMES = ("ticker", "symbol", "tickers", "symbols")


def expand_symbols(value: Sequence[str] | str, data_dir: Path) -> list[str]:
    """The tickers ``value`` names (see the module doc); ``all`` reads the store at ``data_dir``.

    Raises:
        TaskValidationError: an unreadable file, a file naming no ticker, or ``all``
            on an empty store.
    """
    items = [value] if isinstance(value, str) else list(value)
    out: list[str] = []
    for item in items:
        for part in item.split(",") if not item.startswith("@") else [item]:
            text = part.strip()
            if not text:
                continue
            if text.startswith("@"):
                out.extend(read_symbol_file(Path(text[1:]).expanduser()))
            elif text.lower() == "all" and len(items) == 1:
                out.extend(stored_symbols(data_dir))
            else:
                out.append(text)
    return list(dict.fromkeys(out))


def stored_symbols(data_dir: Path) -> list[str]:
    """Every ticker in the store (``all``).

    Raises:
        TaskValidationError: the store is empty.
    """
    from strategyq.data.loader import MarketData

    names = MarketData(data_dir, cache_mb=0).tickers()
    if not names:
        raise TaskValidationError(
            f"'all' names every ticker in the store, and the store at {data_dir} is empty; "
            "load data with 'strategyq data sample' or 'strategyq data import'"
        )
    return names


def read_symbol_file(path: Path) -> list[str]:
    """The tickers of a ``@FILE``: one per line, or a CSV's ticker/symbol column.

    Raises:
        TaskValidationError: the file cannot be read or names no ticker.
    """
    try:
        text = path.read_text()
    except OSError as exc:
        raise TaskValidationError(
            f"cannot read the symbol file {path}: {exc.strerror}; write @FILE with a file of "
            "one ticker per line, or a CSV with a ticker column"
        ) from None
    lines = [ln.split("#", 1)[0].strip() for ln in text.splitlines()]
    lines = [ln for ln in lines if ln]
    if lines and "," in lines[0]:
        names = _csv_column(text, path)
    else:
        names = [ln for ln in lines if ln.lower() not in _COLUMN_NAMES]
    if not names:
        raise TaskValidationError(
            f"the symbol file {path} names no ticker; write one ticker per line"
        )
    return names


def _csv_column(text: str, path: Path) -> list[str]:
    rows = list(csv.reader(io.StringIO(text)))
    header = [c.strip().lower() for c in rows[0]]
    column = next((header.index(n) for n in _COLUMN_NAMES if n in header), None)
    if column is None:
        raise TaskValidationError(
            f"the CSV {path} has no ticker column (its header: {', '.join(rows[0])}); name "
            "the column 'ticker' or 'symbol', or write one ticker per line"
        )
    return [r[column].strip() for r in rows[1:] if len(r) > column and r[column].strip()]


def nearest(name: str, stored: Iterable[str], n: int = 3) -> list[str]:
    """The stored tickers closest to ``name`` (by edit similarity), best first."""
    wanted = normalize_ticker(name)
    return difflib.get_close_matches(wanted, list(stored), n=n, cutoff=0.5)


def did_you_mean(missing: Sequence[str], stored: Iterable[str]) -> str:
    """``APPL → AAPL; MSTF → MSFT`` for the missing names that have near stored ones."""
    pool = list(stored)
    parts = []
    for name in missing:
        close = nearest(name, pool)
        if close:
            parts.append(f"{name} → {' or '.join(close)}")
    return "; ".join(parts)
