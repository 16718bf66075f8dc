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

from strategyq.data.bars import Bars, concat_bars, empty_bars
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

    def read(self, tickers: Sequence[str], manifest: Manifest | None = None) -> Bars:
        """All stored bars of ``tickers`` (each must be in the manifest), ordered by ticker."""
        manifest = manifest or self.manifest()
        by_file: dict[str, list[str]] = {}
        for ticker in tickers:
            by_file.setdefault(manifest.tickers[ticker].file, []).append(ticker)
        try:
            parts = [self._read_file(f, names, manifest) for f, names in by_file.items()]
        except FileNotFoundError:
            # A writer replaced the manifest and removed a file after we read the old
            # manifest; the new manifest names the files that exist now.
            fresh = self.manifest()
            if fresh.generation == manifest.generation:
                raise
            return self.read([t for t in tickers if t in fresh.tickers], fresh)
        return concat_bars(parts)

    def _read_file(self, name: str, tickers: list[str], manifest: Manifest) -> Bars:
        path = self.root / name
        metadata = self._metadata.get(name)
        parquet = pq.ParquetFile(path, metadata=metadata)
        if metadata is None:
            # Files are immutable, so their footer can be cached for good.
            self._metadata[name] = parquet.metadata
        md = parquet.metadata
        group_rows = np.array([md.row_group(i).num_rows for i in range(md.num_row_groups)])
        group_start = np.concatenate([[0], np.cumsum(group_rows)])
        entries = sorted((manifest.tickers[t] for t in tickers), key=lambda e: e.offset)
        names = sorted(tickers, key=lambda t: manifest.tickers[t].offset)
        wanted: set[int] = set()
        for e in entries:
            first = int(np.searchsorted(group_start, e.offset, side="right")) - 1
            last = int(np.searchsorted(group_start, e.offset + e.rows - 1, side="right")) - 1
            wanted.update(range(first, last + 1))
        groups = sorted(wanted)
        table = parquet.read_row_groups(groups, columns=["date", *VALUE_COLUMNS], use_threads=True)
        # Position of each read group's first row inside ``table``.
        read_start = {
            g: int(s) for g, s in zip(groups, np.cumsum([0, *group_rows[groups]]), strict=False)
        }
        starts = []
        for e in entries:
            g = int(np.searchsorted(group_start, e.offset, side="right")) - 1
            starts.append(read_start[g] + e.offset - int(group_start[g]))
        lengths = np.array([e.rows for e in entries], dtype=np.int64)
        contiguous = len(entries) > 0 and all(
            starts[i] + entries[i].rows == starts[i + 1] for i in range(len(entries) - 1)
        )
        columns = {
            col: _column(table, col) for col in ["date", *VALUE_COLUMNS]
        }  # one array per column
        if contiguous and starts[0] == 0 and int(lengths.sum()) == table.num_rows:
            picked = columns
        else:
            index = np.concatenate(
                [np.arange(s, s + n) for s, n in zip(starts, lengths, strict=True)]
            )
            picked = {col: arr[index] for col, arr in columns.items()}
        return Bars(
            tickers=names,
            lengths=lengths,
            dates=picked["date"].astype(np.int32, copy=False),
            values={c: picked[c].astype(np.float64, copy=False) for c in VALUE_COLUMNS},
        )

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
