"""Import daily bars from CSV or Parquet files, all or nothing.

Two layouts are read, recognised by their columns (case and spaces ignored):

* long: ``ticker,date,open,high,low,close,volume[,adj_close]``, any number of tickers;
* one file per ticker, Yahoo style: ``Date,Open,High,Low,Close,Adj Close,Volume``; the
  ticker is ``--ticker`` or the file name without its suffixes (``BRK.B.csv`` → ``BRK.B``).

Every file is parsed and checked before anything is written; one bad row anywhere
rejects the whole import with a list of (file, row, reason). Rows count from 1, the
header excluded.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from strategyq.data.bars import Bars
from strategyq.data.schema import PRICE_COLUMNS, VALUE_COLUMNS, normalize_ticker, ticker_problem
from strategyq.data.store import Store
from strategyq.errors import ImportRejected

log = logging.getLogger(__name__)

Problem = tuple[str, int | None, str]

REQUIRED = ("date", "open", "high", "low", "close", "volume")
_SUFFIXES = (".gz", ".csv", ".parquet", ".pq", ".txt")
_ROWS_PER_REASON = 20  # rows listed per file and reason; the rest are counted


@dataclass(frozen=True)
class ImportSummary:
    """What an import stored."""

    files: int
    tickers: list[str]
    rows: int


def import_files(root: Path, paths: Sequence[Path], ticker: str | None = None) -> ImportSummary:
    """Validate ``paths`` and upsert their bars into the store at ``root`` in one atomic write.

    Raises:
        ImportRejected: Any file or row is invalid; nothing was written.
    """
    bars = parse_files(paths, ticker)
    Store(root).upsert(bars)
    log.info(
        "imported %s rows of %s tickers from %s files", bars.rows, len(bars.tickers), len(paths)
    )
    return ImportSummary(files=len(paths), tickers=bars.tickers, rows=bars.rows)


def parse_files(paths: Sequence[Path], ticker: str | None = None) -> Bars:
    """Read and check ``paths``; return their bars sorted by (ticker, date).

    Raises:
        ImportRejected: Any file or row is invalid.
    """
    if not paths:
        raise ImportRejected("no files to import; name at least one CSV or Parquet file", [])
    problems: list[Problem] = []
    frames: list[pd.DataFrame] = []
    for path in paths:
        frame = _read_checked(Path(path), ticker, problems)
        if frame is not None:
            frames.append(frame)
    if not problems:
        combined = pd.concat(frames, ignore_index=True)
        _check_across_files(combined, problems)
    if problems:
        order = {str(p): i for i, p in enumerate(paths)}
        problems.sort(key=lambda p: (order.get(p[0], 0), p[1] is None, p[1] or 0))
        files = len({p[0] for p in problems})
        raise ImportRejected(
            f"import rejected: {len(problems)} problem(s) in {files} file(s); nothing was "
            "stored. Fix the rows listed and import again",
            problems,
        )
    return _to_bars(combined)


def _read_checked(path: Path, ticker: str | None, problems: list[Problem]) -> pd.DataFrame | None:
    name = str(path)
    try:
        raw = _read_raw(path)
    except FileNotFoundError:
        problems.append((name, None, "file not found"))
        return None
    except pd.errors.EmptyDataError:
        problems.append((name, None, "the file is empty"))
        return None
    except Exception as exc:  # any parser failure is a property of the input file
        problems.append((name, None, f"cannot read the file as CSV or Parquet: {exc}"))
        return None
    raw.columns = [str(c).strip().lower().replace(" ", "_") for c in raw.columns]
    absent = [c for c in REQUIRED if c not in raw.columns]
    has_ticker = "ticker" in raw.columns
    if has_ticker and ticker:
        problems.append((name, None, "the file has a ticker column; import it without --ticker"))
        return None
    if absent:
        problems.append(
            (name, None, f"missing column(s) {', '.join(absent)}; expected {', '.join(REQUIRED)}")
        )
        return None
    if raw.empty:
        problems.append((name, None, "the file has no data rows"))
        return None
    before = len(problems)
    if has_ticker:
        tickers = raw["ticker"].astype("str").map(normalize_ticker)
    else:
        tickers = pd.Series(normalize_ticker(ticker or _ticker_from_name(path)), index=raw.index)
    for value in tickers.unique():
        reason = ticker_problem(str(value))
        if reason:
            _flag(problems, name, (tickers == value).to_numpy(), reason)
    dates = _parse_dates(raw["date"])
    _flag(problems, name, dates.isna().to_numpy(), "date is not a valid YYYY-MM-DD date")
    out = pd.DataFrame({"ticker": tickers.astype(object), "date": dates})
    for col in PRICE_COLUMNS:
        values = pd.to_numeric(raw[col], errors="coerce").astype(np.float64)
        bad = ~np.isfinite(values.to_numpy()) | (values.to_numpy() <= 0)
        _flag(problems, name, bad, f"{col} is missing, not a number or not positive")
        out[col] = values
    volume = pd.to_numeric(raw["volume"], errors="coerce").astype(np.float64).to_numpy()
    _flag(problems, name, ~np.isfinite(volume) | (volume < 0), "volume is missing or negative")
    out["volume"] = volume
    with np.errstate(invalid="ignore"):
        _flag(problems, name, (out["high"] < out["low"]).to_numpy(), "high is below low")
    if "adj_close" in raw.columns:
        adj = pd.to_numeric(raw["adj_close"], errors="coerce").astype(np.float64).to_numpy()
        _flag(
            problems, name, ~np.isfinite(adj) | (adj <= 0), "adj_close is missing or not positive"
        )
        out["adj_factor"] = adj / out["close"].to_numpy()
    else:
        out["adj_factor"] = 1.0
    dup = (
        out.duplicated(["ticker", "date"], keep="first").to_numpy() & out["date"].notna().to_numpy()
    )
    _flag(
        problems,
        name,
        dup,
        "duplicate session: the same ticker and date appear earlier in the file",
    )
    if len(problems) > before:
        return None
    out["source"] = name
    out["row"] = np.arange(1, len(out) + 1)
    return out


def _read_raw(path: Path) -> pd.DataFrame:
    suffixes = [s.lower() for s in path.suffixes]
    frame: pd.DataFrame
    if ".parquet" in suffixes or ".pq" in suffixes:
        frame = pq.ParquetFile(path).read().to_pandas()
    else:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    return frame


def _ticker_from_name(path: Path) -> str:
    name = path.name
    while any(name.lower().endswith(s) for s in _SUFFIXES):
        name = name[: name.rindex(".")]
    return name


def _parse_dates(column: pd.Series) -> pd.Series:  # type: ignore[type-arg]
    if pd.api.types.is_datetime64_any_dtype(column):
        parsed = column
    else:
        text = column.astype(str).str.strip()
        parsed = pd.to_datetime(text, errors="coerce", format="ISO8601")
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_localize(None)  # the session date is the exchange's local date
    out: pd.Series = parsed.dt.normalize().astype("datetime64[ns]")  # type: ignore[type-arg]
    return out


def _flag(problems: list[Problem], name: str, mask: np.ndarray, reason: str) -> None:  # type: ignore[type-arg]
    rows = np.flatnonzero(mask)
    for row in rows[:_ROWS_PER_REASON]:
        problems.append((name, int(row) + 1, reason))
    if len(rows) > _ROWS_PER_REASON:
        problems.append((name, None, f"{len(rows) - _ROWS_PER_REASON} more row(s): {reason}"))


def _check_across_files(frame: pd.DataFrame, problems: list[Problem]) -> None:
    dup = frame.duplicated(["ticker", "date"], keep=False).to_numpy()
    if not dup.any():
        return
    clash = frame[dup].sort_values(["ticker", "date"], kind="stable")  # keeps file order
    seen: dict[tuple[str, pd.Timestamp], tuple[str, int]] = {}
    reported = 0
    for ticker, day, source, row in clash[["ticker", "date", "source", "row"]].itertuples(
        index=False
    ):
        key = (str(ticker), pd.Timestamp(day))
        if key not in seen:
            seen[key] = (str(source), int(row))
            continue
        if reported < _ROWS_PER_REASON:
            where, at = seen[key]
            problems.append(
                (
                    str(source),
                    int(row),
                    f"duplicate session: {key[0]} {key[1]:%Y-%m-%d} is also in {where} row {at}",
                )
            )
        reported += 1


def _to_bars(frame: pd.DataFrame) -> Bars:
    frame = frame.sort_values(["ticker", "date"], kind="stable")
    tickers, counts = np.unique(
        frame["ticker"].to_numpy(dtype=object).astype(str), return_counts=True
    )
    days = frame["date"].to_numpy().astype("datetime64[D]").astype(np.int64).astype(np.int32)
    return Bars(
        tickers=[str(t) for t in tickers],
        lengths=counts.astype(np.int64),
        dates=days,
        values={c: frame[c].to_numpy(dtype=np.float64) for c in VALUE_COLUMNS},
    )
