"""Import daily bars from CSV or Parquet files, all or nothing.

Three layouts are read, recognised by their columns (case and spaces ignored):

* long: ``ticker,date,open,high,low,close,volume[,adj_close]``, any number of tickers;
* one file per ticker, Yahoo style: ``Date,Open,High,Low,Close,Adj Close,Volume``; the
  ticker is ``--ticker`` or the file name without its suffixes (``BRK.B.csv`` → ``BRK.B``);
* what ``yfinance.download(...).to_csv()`` writes (yfinance 0.2.51 and later): three header
  rows, ``Price`` / ``Ticker`` / ``Date`` (or ``Ticker`` first, with ``group_by="ticker"``),
  one or many tickers, with ``auto_adjust`` on (adjusted OHLC, no ``Adj Close``) or off.
  A ticker's empty cells on a date (a multi-ticker download before its listing) are no bar,
  not a bad row.

:func:`import_frame` takes a DataFrame instead of a file: a ``yfinance.download(...)``
result as it is, a one-ticker frame indexed by date, or a long frame.

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
from typing import Any

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
        raise rejected(_ordered(fatal + problems, paths), fatal[0])
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


def import_frame(
    root: Path,
    frame: pd.DataFrame,
    ticker: str | None = None,
    *,
    skip_bad_rows: bool = False,
) -> ImportSummary:
    """Validate a DataFrame of bars and upsert it into the store at ``root`` (all or nothing).

    Args:
        root: The store directory.
        frame: ``yfinance.download(...)``'s result as it is (columns ``(Price, Ticker)``
            or ``(Ticker, Price)``, one or many tickers, ``auto_adjust`` on or off); a
            one-ticker frame indexed by date (``yf.Ticker(t).history()``), with
            ``ticker``; or a long frame with ``ticker`` and ``date`` columns.
        ticker: The ticker of a one-ticker frame without a ticker level or column.
        skip_bad_rows: Store the good rows and report the bad ones instead of refusing.

    Raises:
        ImportRejected: a row is invalid (without ``skip_bad_rows``) or the frame's
            layout is not one of these; nothing was written.
    """
    fatal: list[Problem] = []
    problems: list[Problem] = []
    raw = _frame_table(frame, fatal)
    cols = None
    if raw is not None and ticker is None and "ticker" not in raw.columns:
        fatal.append(
            (
                "DataFrame",
                None,
                "the frame has no ticker column or level; name its "
                "ticker: import_frame(root, frame, ticker='IBM')",
            )
        )
        raw = None
    if raw is not None:
        cols = _columns_of(
            raw, Path("DataFrame"), "DataFrame", ticker, None, fatal, problems, lines=False
        )
    if cols is not None:
        check(cols, problems)
    if fatal or cols is None:
        raise rejected(fatal + problems, fatal[0] if fatal else None)
    bars = to_bars([cols], problems, skip_bad_rows)
    Store(root).upsert(bars)
    return ImportSummary(files=0, tickers=bars.tickers, rows=bars.rows, skipped=problems)


_PRICE_FIELDS = {
    "open",
    "high",
    "low",
    "close",
    "adj close",
    "volume",
    "dividends",
    "stock splits",
    "capital gains",
    "repaired?",
}


def _frame_table(frame: pd.DataFrame, fatal: list[Problem]) -> pd.DataFrame | None:
    """A DataFrame as the table a file would give (normalised names, a date column)."""
    if isinstance(frame.columns, pd.MultiIndex):
        long = _yfinance_long(frame)
        if long is None:
            fatal.append(
                (
                    "DataFrame",
                    None,
                    "its column levels are not yfinance's (Price and "
                    "Ticker); pass a long frame with ticker and date columns",
                )
            )
            return None
        table = long
    else:
        table = frame.copy()
        if "date" not in {str(c).strip().lower() for c in table.columns}:
            table = table.rename_axis("date").reset_index()
    table.columns = [str(c).strip().lower().replace(" ", "_") for c in table.columns]
    return table.reset_index(drop=True)


def _yfinance_long(frame: pd.DataFrame) -> pd.DataFrame | None:
    """A yfinance download (MultiIndex columns, either level order) as one row per bar.

    Rows whose fields are all empty for a ticker are no bar (that ticker did not
    trade that day) and are left out. The index keeps each row's position in the
    download, so a CSV's problems name its line.
    """
    if frame.columns.nlevels != 2:
        return None
    levels = [{str(v).strip().lower() for v in frame.columns.get_level_values(i)} for i in (0, 1)]
    price_level = next((i for i in (0, 1) if levels[i] <= _PRICE_FIELDS), None)
    if price_level is None:
        return None
    ticker_level = 1 - price_level
    parts = []
    for name in dict.fromkeys(frame.columns.get_level_values(ticker_level)):
        part: pd.DataFrame = frame.xs(name, axis=1, level=ticker_level)  # type: ignore[assignment]
        part = part.loc[:, ~part.columns.duplicated()]
        empty = part.isna().to_numpy() | (part.astype(str).map(str.strip) == "").to_numpy()
        present = ~empty.all(axis=1)
        part = part[present]
        part = (
            part.rename_axis("date").reset_index(names="date")
            if "date" not in part.columns
            else part
        )
        part.insert(0, "ticker", str(name))
        part.index = pd.Index(np.flatnonzero(present))
        parts.append(part)
    long = pd.concat(parts) if parts else pd.DataFrame()
    long.columns = [str(c) for c in long.columns]
    return long


def _yfinance_header(path: Path) -> bool:
    """Whether a CSV starts with yfinance's three header rows (Price / Ticker / Date)."""
    try:
        with _open_text(path) as handle:
            firsts = [handle.readline().split(",", 1)[0].strip().lower() for _ in range(3)]
    except (OSError, UnicodeDecodeError):
        return False
    return sorted(firsts[:2]) == ["price", "ticker"] and firsts[2] in ("date", "datetime")


def _open_text(path: Path) -> Any:
    if path.suffix.lower() == ".gz":
        import gzip

        return gzip.open(path, "rt")
    return path.open()


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
    return _columns_of(raw, path, name, ticker, date_format, fatal, problems, lines=not parquet)


def _columns_of(
    raw: pd.DataFrame,
    path: Path,
    name: str,
    ticker: str | None,
    date_format: str | None,
    fatal: list[Problem],
    problems: list[Problem],
    *,
    lines: bool,
) -> Columns | None:
    """A read table's columns for validation, or None after filing why it is unusable."""
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
        lines=raw.index.to_numpy(dtype=np.int64) + raw.attrs.get("first_line", 2)
        if lines
        else None,
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
    if raw.attrs.get("yfinance"):
        return raw
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
    if _yfinance_header(path):
        wide = pd.read_csv(
            path,
            header=[0, 1],
            index_col=0,
            skiprows=[2],
            dtype=str,
            keep_default_na=False,
            skipinitialspace=True,
        )
        long = _yfinance_long(wide)
        if long is None:
            raise ValueError("its Price/Ticker header rows name no price columns")
        long.columns = [str(c).strip().lower().replace(" ", "_") for c in long.columns]
        # Data starts on line 4, after the three header rows.
        long.attrs.update(yfinance=True, first_line=4)
        return long
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
