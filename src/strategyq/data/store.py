"""The on-disk market data store: immutable Parquet files plus one manifest.

Layout under the store root::

    manifest.json          which file and row range holds each ticker (replaced atomically)
    bars/<gen>-<id>.parquet  bars sorted by (ticker, date), never modified once written
    .lock                  held by writers only

A write stages a new Parquet file, then atomically replaces the manifest, so a
reader sees either the old store or the new one, and a failure at any point
leaves the old store intact. Readers take no lock.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from strategyq.data.bars import Bars, DayArray, IntArray, concat_bars, empty_bars
from strategyq.data.schema import STORE_SCHEMA, VALUE_COLUMNS, from_days
from strategyq.errors import DataError

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
ROW_GROUP_ROWS = 65_536
# A file whose live rows fall below this share is rewritten by the next write that
# touches the store, which bounds the space held by superseded rows to about 2x.
COMPACT_BELOW = 0.5


@dataclass(frozen=True)
class TickerEntry:
    """Where one ticker's bars live and what they span."""

    file: str
    offset: int
    rows: int
    first: date
    last: date


@dataclass(frozen=True)
class Manifest:
    """One consistent version of the store."""

    generation: int
    tickers: dict[str, TickerEntry]
    files: dict[str, int]  # file -> total rows in it (live or superseded)


_EMPTY = Manifest(generation=0, tickers={}, files={})


@dataclass(frozen=True)
class Window:
    """Which sessions of each ticker ``Store.read`` returns.

    Attributes:
        first: Days since 1970-01-01 of the first session in range (None: from the start).
        last: Days of the last session in range (None: to the end).
        before: How many sessions before the range are kept too (warm-up and history).
        lookback: When set, the range is the last ``lookback`` sessions up to ``last``
            and ``first`` is ignored.
    """

    first: int | None = None
    last: int | None = None
    before: int = 0
    lookback: int | None = None

    def selects_part(self) -> bool:
        return self.first is not None or self.last is not None or self.lookback is not None

    def rows(self, dates: DayArray, start: IntArray, stop: IntArray) -> tuple[IntArray, IntArray]:
        """File rows ``[start, stop)`` narrowed to the window; ``dates`` are theirs, joined."""
        lengths = stop - start
        seg = np.zeros(lengths.shape[0], dtype=np.int64)
        np.cumsum(lengths[:-1], out=seg[1:])
        codes = np.repeat(np.arange(lengths.shape[0], dtype=np.int64), lengths)
        # (ticker, day) as one sortable integer, so one searchsorted finds every bound.
        composite = (codes << 32) + (dates.astype(np.int64) + (1 << 31))
        base = (np.arange(lengths.shape[0], dtype=np.int64) << 32) + (1 << 31)
        if self.last is None:
            end = lengths.copy()
        else:
            end = np.searchsorted(composite, base + self.last, side="right") - seg
        if self.lookback is not None:
            begin = np.maximum(end - self.lookback, 0)
        elif self.first is None:
            begin = np.zeros_like(lengths)
        else:
            begin = np.searchsorted(composite, base + self.first, side="left") - seg
        # A ticker with no session in range keeps no row: its earlier sessions are no use.
        end = np.where(end > begin, end, begin)
        keep = np.where(end > begin, np.maximum(begin - self.before, 0), begin)
        return start + keep, start + end


class Store:
    """Read and write the bars under ``root``.

    Args:
        root: The store directory (created on the first write).
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self._lock = threading.Lock()
        self._manifest: Manifest = _EMPTY
        self._signature: tuple[int, int, int] | None = None
        self._metadata: dict[str, pq.FileMetaData] = {}

    # -- reading -----------------------------------------------------------------------

    def manifest(self) -> Manifest:
        """The current manifest (re-read only when the file changed on disk)."""
        path = self.root / MANIFEST
        try:
            st = path.stat()
        except FileNotFoundError:
            return _EMPTY
        signature = (st.st_ino, st.st_mtime_ns, st.st_size)
        with self._lock:
            if signature != self._signature:
                self._manifest = _parse_manifest(path)
                self._signature = signature
            return self._manifest

    def read(
        self,
        tickers: Sequence[str],
        manifest: Manifest | None = None,
        window: Window | None = None,
    ) -> Bars:
        """Stored bars of ``tickers`` (each must be in the manifest), ordered by ticker.

        Without ``window`` every stored session; with it only the sessions it selects,
        and only the row groups holding them are decoded, one at a time, so memory
        follows the rows returned rather than the stored history.
        """
        manifest = manifest or self.manifest()
        by_file: dict[str, list[str]] = {}
        for ticker in tickers:
            by_file.setdefault(manifest.tickers[ticker].file, []).append(ticker)
        try:
            parts = [self._read_file(f, names, manifest, window) for f, names in by_file.items()]
        except FileNotFoundError:
            # A writer replaced the manifest and removed a file after we read the old
            # manifest; the new manifest names the files that exist now.
            fresh = self.manifest()
            if fresh.generation == manifest.generation:
                raise
            return self.read([t for t in tickers if t in fresh.tickers], fresh, window)
        return concat_bars(parts)

    def _read_file(
        self, name: str, tickers: list[str], manifest: Manifest, window: Window | None
    ) -> Bars:
        path = self.root / name
        metadata = self._metadata.get(name)
        parquet = pq.ParquetFile(path, metadata=metadata)
        if metadata is None:
            # Files are immutable, so their footer can be cached for good.
            self._metadata[name] = parquet.metadata
        md = parquet.metadata
        group_rows = np.array(
            [md.row_group(i).num_rows for i in range(md.num_row_groups)], dtype=np.int64
        )
        group_start = np.concatenate([[0], np.cumsum(group_rows)])
        names = sorted(tickers, key=lambda t: manifest.tickers[t].offset)
        entries = [manifest.tickers[t] for t in names]
        # Rows [keep_start, keep_stop) of the file are returned for each ticker.
        keep_start = np.array([e.offset for e in entries], dtype=np.int64)
        keep_stop = keep_start + np.array([e.rows for e in entries], dtype=np.int64)
        if window is not None and window.selects_part():
            keep_start, keep_stop = window.rows(
                self._dates(parquet, group_start, keep_start, keep_stop), keep_start, keep_stop
            )
        lengths = keep_stop - keep_start
        total = int(lengths.sum())
        out_start = np.concatenate([[0], np.cumsum(lengths)])[:-1]
        dates = np.empty(total, dtype=np.int32)
        values = {c: np.empty(total, dtype=np.float64) for c in VALUE_COLUMNS}
        for g in _groups_of(group_start, keep_start, keep_stop):
            g_lo, g_hi = int(group_start[g]), int(group_start[g + 1])
            table = parquet.read_row_group(g, columns=["date", *VALUE_COLUMNS])
            columns = {col: _column(table, col) for col in ["date", *VALUE_COLUMNS]}
            del table
            lo = np.maximum(keep_start, g_lo)
            hi = np.minimum(keep_stop, g_hi)
            overlap = np.flatnonzero(hi > lo)
            for i in overlap:
                src = slice(int(lo[i]) - g_lo, int(hi[i]) - g_lo)
                dst_lo = int(out_start[i] + lo[i] - keep_start[i])
                dst = slice(dst_lo, dst_lo + int(hi[i] - lo[i]))
                dates[dst] = columns["date"][src]
                for col in VALUE_COLUMNS:
                    values[col][dst] = columns[col][src]
        return Bars(tickers=names, lengths=lengths, dates=dates, values=values)

    def _dates(
        self, parquet: pq.ParquetFile, group_start: IntArray, start: IntArray, stop: IntArray
    ) -> DayArray:
        """The ``date`` column of the rows ``[start, stop)`` of each ticker, concatenated.

        Only the date column is decoded (a ninth of a row's bytes), to find which rows the
        window keeps before the value columns are read.
        """
        out = np.empty(int((stop - start).sum()), dtype=np.int32)
        out_start = np.concatenate([[0], np.cumsum(stop - start)])[:-1]
        for g in _groups_of(group_start, start, stop):
            g_lo, g_hi = int(group_start[g]), int(group_start[g + 1])
            days = _column(parquet.read_row_group(g, columns=["date"]), "date")
            lo = np.maximum(start, g_lo)
            hi = np.minimum(stop, g_hi)
            for i in np.flatnonzero(hi > lo):
                dst_lo = int(out_start[i] + lo[i] - start[i])
                out[dst_lo : dst_lo + int(hi[i] - lo[i])] = days[
                    int(lo[i]) - g_lo : int(hi[i]) - g_lo
                ]
        return out

    # -- writing -----------------------------------------------------------------------

    def upsert(self, bars: Bars) -> Manifest:
        """Store ``bars``, replacing stored sessions of the same (ticker, date).

        ``bars`` must be valid: sorted by ticker then date, no duplicate sessions.
        The write is atomic: on any failure the store stays as it was.
        """
        if not bars.tickers:
            return self.manifest()
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "bars").mkdir(exist_ok=True)
        with self._write_lock():
            current = self.manifest()
            touched = set(bars.tickers)
            live: dict[str, int] = dict.fromkeys(current.files, 0)
            for ticker, entry in current.tickers.items():
                if ticker not in touched:
                    live[entry.file] += entry.rows
            sparse = {f for f, rows in live.items() if rows < COMPACT_BELOW * current.files[f]}
            moved = {t for t, e in current.tickers.items() if e.file in sparse}
            old_names = sorted((touched & current.tickers.keys()) | moved)
            old = self.read(old_names, current) if old_names else empty_bars()
            merged = merge_bars(old, bars)
            name = f"bars/{current.generation + 1:06d}-{uuid.uuid4().hex[:12]}.parquet"
            self._write_parquet(merged, name)
            tickers = dict(current.tickers)
            offsets = merged.offsets
            for i, ticker in enumerate(merged.tickers):
                start, stop = int(offsets[i]), int(offsets[i + 1])
                tickers[ticker] = TickerEntry(
                    file=name,
                    offset=start,
                    rows=stop - start,
                    first=from_days(int(merged.dates[start])),
                    last=from_days(int(merged.dates[stop - 1])),
                )
            referenced = {e.file for e in tickers.values()}
            files = {f: n for f, n in current.files.items() if f in referenced}
            files[name] = merged.rows
            manifest = Manifest(current.generation + 1, tickers, files)
            try:
                self._write_manifest(manifest)
            except BaseException:
                (self.root / name).unlink(missing_ok=True)
                raise
            self._collect_garbage(set(files))
            log.info(
                "stored %s rows of %s tickers in %s (generation %s)",
                merged.rows,
                len(merged.tickers),
                name,
                manifest.generation,
            )
            return manifest

    @contextmanager
    def _write_lock(self) -> Iterator[None]:
        with open(self.root / ".lock", "a+b") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _write_parquet(self, bars: Bars, name: str) -> None:
        codes = np.repeat(np.arange(len(bars.tickers), dtype=np.int32), bars.lengths)
        table = pa.Table.from_arrays(
            [
                pa.DictionaryArray.from_arrays(codes, pa.array(bars.tickers, pa.string())),
                pa.array(bars.dates, pa.int32()).view(pa.date32()),
                *[pa.array(bars.values[c], pa.float64()) for c in VALUE_COLUMNS],
            ],
            schema=STORE_SCHEMA,
        )
        tmp = self.root / f".tmp-{uuid.uuid4().hex}.parquet"
        try:
            pq.write_table(table, tmp, row_group_size=ROW_GROUP_ROWS, compression="snappy")
            _fsync(tmp)
            os.replace(tmp, self.root / name)
        finally:
            tmp.unlink(missing_ok=True)

    def _write_manifest(self, manifest: Manifest) -> None:
        doc = {
            "format": FORMAT_VERSION,
            "generation": manifest.generation,
            "files": manifest.files,
            "tickers": {
                t: {
                    "file": e.file,
                    "offset": e.offset,
                    "rows": e.rows,
                    "first": e.first.isoformat(),
                    "last": e.last.isoformat(),
                }
                for t, e in sorted(manifest.tickers.items())
            },
        }
        tmp = self.root / f".tmp-{uuid.uuid4().hex}.json"
        try:
            tmp.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
            _fsync(tmp)
            os.replace(tmp, self.root / MANIFEST)
            _fsync(self.root)
        finally:
            tmp.unlink(missing_ok=True)

    def _collect_garbage(self, keep: set[str]) -> None:
        # Under the write lock: anything not in the manifest is superseded or an orphan
        # of a failed write. A reader still holding an older manifest retries (see read).
        for path in (self.root / "bars").glob("*.parquet"):
            if f"bars/{path.name}" not in keep:
                path.unlink(missing_ok=True)
                self._metadata.pop(f"bars/{path.name}", None)
        for path in self.root.glob(".tmp-*"):
            path.unlink(missing_ok=True)


def merge_bars(old: Bars, new: Bars) -> Bars:
    """Union of ``old`` and ``new``; on the same (ticker, date) the row of ``new`` wins."""
    if not old.tickers:
        return new
    names = sorted(set(old.tickers) | set(new.tickers))
    code = {t: i for i, t in enumerate(names)}
    old_codes = np.array([code[t] for t in old.tickers], dtype=np.int64)[old.ticker_codes()]
    new_codes = np.array([code[t] for t in new.tickers], dtype=np.int64)[new.ticker_codes()]
    tid = np.concatenate([old_codes, new_codes])
    day = np.concatenate([old.dates, new.dates])
    # Both inputs are sorted by (ticker, date): a stable sort of the two runs is a merge,
    # and keeps an old row before the new row of the same session.
    key = tid << 32 | (day.astype(np.int64) + 2**31)
    order = np.argsort(key, kind="stable")
    tid, day = tid[order], day[order]
    keep = np.ones(order.shape[0], dtype=bool)
    keep[:-1] = (tid[:-1] != tid[1:]) | (day[:-1] != day[1:])
    order = order[keep]
    return Bars(
        tickers=names,
        lengths=np.bincount(tid[keep], minlength=len(names)).astype(np.int64),
        dates=day[keep],
        values={c: np.concatenate([old.values[c], new.values[c]])[order] for c in VALUE_COLUMNS},
    )


def _groups_of(group_start: IntArray, start: IntArray, stop: IntArray) -> list[int]:
    """The row groups that hold any of the rows ``[start[i], stop[i])``, ascending."""
    wanted: set[int] = set()
    for lo, hi in zip(start.tolist(), stop.tolist(), strict=True):
        if hi > lo:
            first = int(np.searchsorted(group_start, lo, side="right")) - 1
            last = int(np.searchsorted(group_start, hi - 1, side="right")) - 1
            wanted.update(range(first, last + 1))
    return sorted(wanted)


def _column(table: pa.Table, name: str) -> np.ndarray:  # type: ignore[type-arg]
    column = table.column(name)
    if name == "date":
        column = column.cast(pa.int32())
    out: np.ndarray = column.to_numpy()  # type: ignore[type-arg]
    return out


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _parse_manifest(path: Path) -> Manifest:
    try:
        doc = orjson.loads(path.read_bytes())
        if doc.get("format") != FORMAT_VERSION:
            raise DataError(
                f"{path} has format {doc.get('format')!r}, this version reads {FORMAT_VERSION}; "
                "upgrade strategyq or re-create the store"
            )
        tickers = {
            t: TickerEntry(
                file=e["file"],
                offset=int(e["offset"]),
                rows=int(e["rows"]),
                first=date.fromisoformat(e["first"]),
                last=date.fromisoformat(e["last"]),
            )
            for t, e in doc["tickers"].items()
        }
        files = {str(f): int(n) for f, n in doc["files"].items()}
        return Manifest(int(doc["generation"]), tickers, files)
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise DataError(
            f"the market data manifest {path} is unreadable ({exc}); restore it or delete the "
            "store directory and import again"
        ) from exc
