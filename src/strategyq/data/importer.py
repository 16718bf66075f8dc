"""Import daily bars from CSV or Parquet files, all or nothing.

Two layouts are read, recognised by their columns (case and spaces ignored):

* long: ``ticker,date,open,high,low,close,volume[,adj_close]``, any number of tickers;
* one file per ticker, Yahoo style: ``Date,Open,High,Low,Close,Adj Close,Volume``; the
  ticker is ``--ticker`` or the file name without its suffixes (``BRK.B.csv`` → ``BRK.B``).

Every file is parsed and checked before anything is written (``strategyq.data.validate``);
one bad row anywhere rejects the whole import with a list of (file, line, reason), the
header being line 1 as in an editor. With ``skip_bad_rows`` the good rows are stored and
the bad ones listed; the write is atomic either way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from strategyq.data.bars import Bars, IntArray
from strategyq.data.schema import normalize_ticker, ticker_problem
from strategyq.data.store import Store
from strategyq.data.validate import (
    NAT_DAY,
    Columns,
    Problem,
    check,
    date_hint,
    flag,
    parse_dates,
    rejected,
    to_bars,
)
from strategyq.errors import ImportRejected

log = logging.getLogger(__name__)

REQUIRED = ("date", "open", "high", "low", "close", "volume")
_SUFFIXES = (".gz", ".csv", ".parquet", ".pq", ".txt")


@dataclass(frozen=True)
class ImportSummary:
    """What an import stored, and the rows it left out (only with ``skip_bad_rows``)."""

    files: int
    tickers: list[str]
    rows: int
    skipped: list[Problem] = field(default_factory=list)


def import_files(
    root: Path,
    paths: Sequence[Path],
    ticker: str | None = None,
    *,
    date_format: str | None = None,
    skip_bad_rows: bool = False,
) -> ImportSummary:
    """Validate ``paths`` and upsert their bars into the store at ``root`` in one atomic write.

    Args:
        root: The store directory.
        paths: CSV (optionally gzipped) or Parquet files.
        ticker: The ticker of one-ticker files (default: the file name).
        date_format: A ``strptime`` format for text dates that are not ``YYYY-MM-DD``.
        skip_bad_rows: Store the good rows and report the bad ones instead of refusing.

    Raises:
        ImportRejected: A file cannot be read, or (without ``skip_bad_rows``) any row is
            invalid; nothing was written.
    """
    bars, skipped = parse_files(paths, ticker, date_format=date_format, skip_bad_rows=skip_bad_rows)
    Store(root).upsert(bars)
    log.info(
        "imported %s rows of %s tickers from %s files (%s problem(s) skipped)",
        bars.rows,
        len(bars.tickers),
        len(paths),
        len(skipped),
    )
    return ImportSummary(files=len(paths), tickers=bars.tickers, rows=bars.rows, skipped=skipped)


def parse_files(
    paths: Sequence[Path],
    ticker: str | None = None,
    *,
    date_format: str | None = None,
    skip_bad_rows: bool = False,
) -> tuple[Bars, list[Problem]]:
    """Read and check ``paths``; return their bars sorted by (ticker, date) and what was skipped.

    Raises:
        ImportRejected: A file cannot be read, or any row is invalid and ``skip_bad_rows``
            is false.
    """
    if not paths:
        raise ImportRejected("no files to import; name at least one CSV or Parquet file", [])
    fatal: list[Problem] = []
    problems: list[Problem] = []
    sources: list[Columns] = []
    for path in paths:
        cols = _read_columns(Path(path), ticker, date_format, fatal, problems)
        if cols is not None:
            check(cols, problems)
            sources.append(cols)
    if fatal:
        raise rejected(_ordered(fatal + problems, paths))
    try:
        bars = to_bars(sources, problems, skip_bad_rows)
    except ImportRejected as exc:
        raise rejected(_ordered(exc.problems, paths)) from None
    if not bars.tickers:
        raise ImportRejected(
            "import rejected: no row can be stored; nothing was stored. Fix the rows listed "
            "and import again",
            _ordered(problems, paths),
        )
    return bars, _ordered(problems, paths)


def _ordered(problems: list[Problem], paths: Sequence[Path]) -> list[Problem]:
    order = {str(p): i for i, p in enumerate(paths)}
    return sorted(problems, key=lambda p: (order.get(p[0], len(order)), p[1] is None, p[1] or 0))


def _read_columns(
    path: Path,
    ticker: str | None,
    date_format: str | None,
    fatal: list[Problem],
    problems: list[Problem],
) -> Columns | None:
    name = str(path)
    parquet = _is_parquet(path)
    raw = _read_table(path, parquet, fatal)
    if raw is None:
        return None
    reason = _layout_problem(raw, ticker)
    if reason:
        fatal.append((name, None, reason))
        return None
    identified = _identify_tickers(raw, path, ticker)
    if isinstance(identified, str):
        fatal.append((name, None, identified))
        return None
    names, codes = identified
    cols = Columns(
        source=name,
        names=names,
        codes=codes,
        days=_days(raw["date"], date_format),
        values={c: _numbers(raw[c]) for c in (*REQUIRED[1:], "adj_close") if c in raw.columns},
        shown=lambda row, col: _shown(raw, row, col),
        lines=None if parquet else raw.index.to_numpy(dtype=np.int64) + 2,
        date_hint=date_hint(date_format),
    )
    for code, value in enumerate(names):
        reason = ticker_problem(value)
        if reason:
            flag(problems, cols, cols.codes == code, _always(reason), reason)
    return cols


def _read_table(path: Path, parquet: bool, fatal: list[Problem]) -> pd.DataFrame | None:
    """The file's rows with normalised column names, or None after filing why it cannot be read."""
    name = str(path)
    try:
        raw = _read_raw(path, parquet)
    except FileNotFoundError:
        fatal.append((name, None, "file not found"))
        return None
    except pd.errors.EmptyDataError:
        fatal.append((name, None, "the file is empty"))
        return None
    except Exception as exc:  # any parser failure is a property of the input file
        fatal.append((name, None, f"cannot read the file as CSV or Parquet: {exc}"))
        return None
    raw.columns = [str(c).strip().lower().replace(" ", "_") for c in raw.columns]
    if not parquet:
        # Blank lines were kept so that the index maps to the editor's line numbers.
        blank = (raw == "").all(axis=1).to_numpy()
        raw = raw[~blank]
    return raw


def _layout_problem(raw: pd.DataFrame, ticker: str | None) -> str | None:
    """Why the table's columns or size make the whole file unusable (None when they don't)."""
    absent = [c for c in REQUIRED if c not in raw.columns]
    if "ticker" in raw.columns and ticker:
        return "the file has a ticker column; import it without --ticker"
    if absent:
        return f"missing column(s) {', '.join(absent)}; expected {', '.join(REQUIRED)}"
    if raw.empty:
        return "the file has no data rows"
    return None


def _identify_tickers(
    raw: pd.DataFrame, path: Path, ticker: str | None
) -> tuple[list[str], IntArray] | str:
    """Ticker names and each row's code into them, or why the file names no valid ticker."""
    if "ticker" in raw.columns:
        return _codes(raw["ticker"])
    given = normalize_ticker(ticker or _ticker_from_name(path))
    reason = ticker_problem(given)
    if reason:
        if ticker:
            return reason
        return (
            f"the file name does not name a ticker ({reason}); name it with "
            "--ticker, or use a long file with a ticker column"
        )
    return [given], np.zeros(len(raw), dtype=np.int64)


def _always(reason: str) -> Callable[[int], str]:
    return lambda _row: reason


def _is_parquet(path: Path) -> bool:
    suffixes = [s.lower() for s in path.suffixes]
    return ".parquet" in suffixes or ".pq" in suffixes


def _read_raw(path: Path, parquet: bool) -> pd.DataFrame:
    if parquet:
        frame: pd.DataFrame = pq.ParquetFile(path).read().to_pandas()
        return frame.reset_index(drop=True)
    return pd.read_csv(
        path, dtype=str, keep_default_na=False, skipinitialspace=True, skip_blank_lines=False
    )


def _ticker_from_name(path: Path) -> str:
    name = path.name
    while any(name.lower().endswith(s) for s in _SUFFIXES):
        name = name[: name.rindex(".")]
    return name


def _codes(column: pd.Series) -> tuple[list[str], np.ndarray]:  # type: ignore[type-arg]
    normalized = column.astype(str).map(normalize_ticker)
    codes, uniques = pd.factorize(normalized, sort=True)
    return [str(u) for u in uniques], codes.astype(np.int64)


def _days(column: pd.Series, date_format: str | None) -> np.ndarray:  # type: ignore[type-arg]
    if pd.api.types.is_datetime64_any_dtype(column):
        parsed = column
        if getattr(parsed.dt, "tz", None) is not None:
            parsed = parsed.dt.tz_localize(None)  # the session date is the exchange's local date
        days = parsed.dt.normalize().to_numpy(dtype="datetime64[D]")
        out = np.where(np.isnat(days), NAT_DAY, days.astype(np.int64)).astype(np.int32)
        return out
    if column.dtype == object and len(column) and not isinstance(column.iloc[0], str):
        # Parquet date32 columns arrive as datetime.date objects.
        return _days(pd.to_datetime(column, errors="coerce"), date_format)
    return parse_dates(column, date_format)


def _numbers(column: pd.Series) -> np.ndarray:  # type: ignore[type-arg]
    values: np.ndarray = (  # type: ignore[type-arg]
        pd.to_numeric(column, errors="coerce").astype(np.float64).to_numpy()
    )
    return values


def _shown(raw: pd.DataFrame, row: int, col: str) -> str:
    return str(raw[col].iloc[row])
