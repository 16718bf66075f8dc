"""``MarketData``: the strategy DataFrame for a set of symbols and a date range."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from strategyq.data.bars import Bars, IntArray
from strategyq.data.cache import LRUCache
from strategyq.data.indicators import Layout, compute, grid_positions
from strategyq.data.schema import (
    INDICATOR_COLUMNS,
    PRICE_COLUMNS,
    VALUE_COLUMNS,
    normalize_ticker,
    session_date,
    to_days,
)
from strategyq.data.store import Manifest, Store, TickerEntry, Window
from strategyq.errors import DataError

log = logging.getLogger(__name__)

_NS_PER_DAY = 86_400 * 1_000_000_000
_STR_DTYPE = pd.StringDtype("python", na_value=np.nan)


@dataclass(frozen=True)
class LoadResult:
    """What ``MarketData.load`` found.

    Attributes:
        frame: One row per (ticker, session), sorted by ticker then date, RangeIndex.
            On a cache hit this is the cached object itself: do not mutate it.
        missing: Requested symbols the store does not hold at all.
        empty: Stored symbols with no session in the requested range.
        ranges: First and last stored session of every requested stored symbol.
    """

    frame: pd.DataFrame
    missing: list[str]
    empty: list[str]
    ranges: dict[str, tuple[date, date]]


class MarketData:
    """The market data store plus a bounded in-memory cache of loaded frames.

    Args:
        root: The store directory (``Settings.data_dir``).
        cache_mb: Memory budget of the frame cache; 0 disables it.
    """

    def __init__(self, root: Path, cache_mb: int = 1024) -> None:
        self.store = Store(root)
        self.cache: LRUCache[LoadResult] = LRUCache(max(cache_mb, 0) * 1024 * 1024)

    def tickers(self) -> list[str]:
        """Every stored ticker, sorted."""
        return sorted(self.store.manifest().tickers)

    def entries(self) -> dict[str, TickerEntry]:
        """Every stored ticker with its first/last session and row count."""
        return dict(sorted(self.store.manifest().tickers.items()))

    def latest_session(self, symbols: Sequence[str]) -> date | None:
        """The latest stored session among ``symbols`` (None when none is stored)."""
        entries = self.store.manifest().tickers
        lasts = [entries[t].last for t in _normalize(symbols) if t in entries]
        return max(lasts) if lasts else None

    def load(
        self,
        symbols: Sequence[str],
        start: date | datetime | None,
        end: date | datetime | None,
        *,
        adjusted: bool = True,
        warmup_sessions: int = 250,
        lookback_sessions: int | None = None,
        indicators: bool | Sequence[str] = True,
        history_sessions: int = 0,
        bar_columns: Sequence[str] = VALUE_COLUMNS,
    ) -> LoadResult:
        """Bars and indicators of ``symbols`` for sessions ``start..end`` (both inclusive).

        Indicators are computed on up to ``warmup_sessions`` earlier sessions first, then
        the frame is cut to the range. With ``lookback_sessions`` the range is instead the
        last N sessions of each ticker up to ``end`` (``start`` is ignored). With
        ``adjusted`` prices are multiplied by ``adj_factor`` and volume divided by it.
        With ``indicators=False`` the frame has the bars only (a fifth of the memory):
        the same rows, for code that needs prices but not indicators; with a list of
        indicator names, the bars and those indicators (in their usual order). With
        ``history_sessions`` the frame also keeps up to that many sessions of each
        ticker before ``start`` (a backtest's strategy sees them; they never trade).
        ``bar_columns`` names the bar columns kept (every one by default; always in
        ``VALUE_COLUMNS`` order): the engine reads the four prices only.

        Raises:
            DataError: The range or a count is invalid, or a bar column is unknown.
        """
        requested = _normalize(symbols)
        indicators = _indicator_set(indicators)
        bars_kept = _bar_set(bar_columns)
        first = session_date(start) if start is not None else None
        last = session_date(end) if end is not None else None
        _check_range(first, last, warmup_sessions, lookback_sessions, history_sessions)
        if lookback_sessions is not None:
            first = None
        manifest = self.store.manifest()
        key = (
            self.store.root,
            manifest.generation,
            tuple(sorted(set(requested))),
            first,
            last,
            adjusted,
            warmup_sessions,
            lookback_sessions,
            indicators,
            history_sessions,
            bars_kept,
        )
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        result, size = _load(
            self.store,
            manifest,
            requested,
            first,
            last,
            adjusted,
            warmup_sessions,
            lookback_sessions,
            indicators,
            history_sessions,
            bars_kept,
        )
        self.cache.put(key, result, size)
        return result


def _indicator_set(indicators: bool | Sequence[str]) -> bool | tuple[str, ...]:
    """``True`` (all), ``False`` (none) or the named indicators in frame order.

    Raises:
        DataError: a name is not an indicator column.
    """
    if isinstance(indicators, bool):
        return indicators
    names = set(indicators)
    unknown = sorted(names - set(INDICATOR_COLUMNS))
    if unknown:
        raise DataError(
            f"not indicator columns: {', '.join(unknown)}; pick from {', '.join(INDICATOR_COLUMNS)}"
        )
    if names == set(INDICATOR_COLUMNS):
        return True
    return tuple(c for c in INDICATOR_COLUMNS if c in names) or False


def _bar_set(names: Sequence[str]) -> tuple[str, ...]:
    """The bar columns named, in ``VALUE_COLUMNS`` order.

    Raises:
        DataError: a name is not a bar column.
    """
    unknown = sorted(set(names) - set(VALUE_COLUMNS))
    if unknown:
        raise DataError(
            f"not bar columns: {', '.join(unknown)}; pick from {', '.join(VALUE_COLUMNS)}"
        )
    return tuple(c for c in VALUE_COLUMNS if c in set(names))


def _check_range(
    first: date | None, last: date | None, warmup: int, lookback: int | None, history: int
) -> None:
    if first is not None and last is not None and first > last and lookback is None:
        raise DataError(f"start {first} is after end {last}; swap them")
    if warmup < 0 or history < 0 or (lookback is not None and lookback < 1):
        raise DataError(
            "warmup_sessions and history_sessions must be >= 0 and lookback_sessions >= 1"
        )


def _normalize(symbols: Sequence[str]) -> list[str]:
    if isinstance(symbols, str):
        symbols = [symbols]
    return list(dict.fromkeys(normalize_ticker(s) for s in symbols if s.strip()))


def _load(
    store: Store,
    manifest: Manifest,
    requested: list[str],
    first: date | None,
    last: date | None,
    adjusted: bool,
    warmup: int,
    lookback: int | None,
    indicators: bool | tuple[str, ...],
    history: int = 0,
    bars_kept: tuple[str, ...] = VALUE_COLUMNS,
) -> tuple[LoadResult, int]:
    known = sorted(t for t in requested if t in manifest.tickers)
    missing = [t for t in requested if t not in manifest.tickers]
    ranges = {t: (manifest.tickers[t].first, manifest.tickers[t].last) for t in known}
    window = Window(
        first=to_days(first) if first is not None else None,
        last=to_days(last) if last is not None else None,
        before=warmup + history,
        lookback=lookback,
    )
    bars = store.read(known, manifest, window)
    begin, stop = _window(bars, first, last, lookback)
    offsets = bars.offsets[:-1]
    if history:
        # Only tickers with sessions in the range get history: the others stay empty.
        begin = np.where(stop > begin, np.maximum(offsets, begin - history), begin)
    warm = np.maximum(offsets, begin - warmup)
    has_rows = stop > begin
    empty = [t for t, ok in zip(bars.tickers, has_rows, strict=True) if not ok]
    names = [t for t, ok in zip(bars.tickers, has_rows, strict=True) if ok]
    warm, begin, stop = warm[has_rows], begin[has_rows], stop[has_rows]
    lengths = stop - warm
    skip = begin - warm
    kept = stop - begin
    whole = (
        bool(has_rows.all()) and bool((warm == offsets).all()) and int(lengths.sum()) == bars.rows
    )
    trimmed = bars if whole or not names else bars.take(_ranges_index(warm, lengths), lengths)
    frame = _frame(trimmed, names, lengths, skip, kept, adjusted, indicators, bars_kept)
    size = int(frame.memory_usage(index=False, deep=False).sum())
    log.debug("loaded %s rows of %s tickers (%s missing)", len(frame), len(names), len(missing))
    return LoadResult(frame=frame, missing=missing, empty=empty, ranges=ranges), size


def _window(
    bars: Bars, first: date | None, last: date | None, lookback: int | None
) -> tuple[IntArray, IntArray]:
    """Flat row range ``[begin, stop)`` of each ticker inside the requested sessions."""
    offsets = bars.offsets
    codes = bars.ticker_codes()
    # (ticker code, day) as one sortable integer, so one searchsorted finds every bound.
    composite = (codes << 32) + (bars.dates.astype(np.int64) + (1 << 31))
    base = np.arange(len(bars.tickers), dtype=np.int64) << 32
    if first is None:
        begin = offsets[:-1].copy()
    else:
        begin = np.searchsorted(composite, base + to_days(first) + (1 << 31), side="left")
    if last is None:
        stop = offsets[1:].copy()
    else:
        stop = np.searchsorted(composite, base + to_days(last) + (1 << 31), side="right")
    if lookback is not None:
        begin = np.maximum(offsets[:-1], stop - lookback)
    return begin.astype(np.int64), stop.astype(np.int64)


def _ranges_index(starts: IntArray, lengths: IntArray) -> IntArray:
    """Concatenated ``arange(starts[i], starts[i] + lengths[i])``."""
    out_start = np.zeros(lengths.shape[0], dtype=np.int64)
    np.cumsum(lengths[:-1], out=out_start[1:])
    return np.repeat(starts - out_start, lengths) + np.arange(int(lengths.sum()), dtype=np.int64)


def _frame(
    bars: Bars,
    names: list[str],
    lengths: IntArray,
    skip: IntArray,
    kept: IntArray,
    adjusted: bool,
    indicators: bool | tuple[str, ...] = True,
    bars_kept: tuple[str, ...] = VALUE_COLUMNS,
) -> pd.DataFrame:
    chosen = INDICATOR_COLUMNS if indicators is True else (indicators or ())
    columns = [*bars_kept, *chosen]
    rows = int(kept.sum())
    block = np.empty((len(columns), rows))
    if names:
        values = dict(bars.values)
        if adjusted and chosen:
            # The indicators run over the warm-up too, so they need adjusted copies of the
            # whole read; without indicators only the kept rows are adjusted, in place.
            factor = values["adj_factor"]
            for col in PRICE_COLUMNS:
                values[col] = values[col] * factor
            values["volume"] = values["volume"] / factor
        layout = Layout(lengths)
        flat_keep = _ranges_index(_starts(lengths) + skip, kept)
        for i, col in enumerate(bars_kept):
            np.take(values[col], flat_keep, out=block[i], mode="clip")
        if adjusted and not chosen:
            at = {col: i for i, col in enumerate(bars_kept)}
            factor = (
                block[at["adj_factor"]]
                if "adj_factor" in at
                else np.take(values["adj_factor"], flat_keep, mode="clip")
            )
            for col in (*PRICE_COLUMNS, "volume"):
                if col in at:
                    operation = np.divide if col == "volume" else np.multiply
                    operation(block[at[col]], factor, out=block[at[col]])
        row = len(bars_kept)
        computed = (
            compute(
                layout,
                values["open"],
                values["high"],
                values["low"],
                values["close"],
                values["volume"],
                None if indicators is True else frozenset(chosen),
            )
            if chosen
            else iter(())
        )
        grid_keep = grid_positions(lengths, skip, layout.width) if chosen else flat_keep
        for i, (name, grid) in enumerate(computed):
            if name != chosen[i]:
                raise AssertionError(f"indicator order changed: {name}")
            flat = np.ascontiguousarray(grid).reshape(-1)
            # mode="clip" lets take write straight into ``out`` instead of buffering.
            np.take(flat, grid_keep, out=block[row + i], mode="clip")
        # Days to nanoseconds in one int64 array (no int64 copy of the days first).
        stamps = np.multiply(bars.dates[flat_keep], np.int64(_NS_PER_DAY), dtype=np.int64)
    else:
        stamps = np.zeros(0, dtype=np.int64)
    frame = pd.DataFrame(block.T, columns=columns, copy=False)
    frame.insert(0, "date", stamps.view("M8[ns]"))
    frame.insert(0, "ticker", _ticker_column(names, kept))
    return frame


def _starts(lengths: IntArray) -> IntArray:
    out = np.zeros(lengths.shape[0], dtype=np.int64)
    np.cumsum(lengths[:-1], out=out[1:])
    return out


def _ticker_column(names: list[str], counts: IntArray) -> pd.Series:  # type: ignore[type-arg]
    """A ``str`` column repeating each name ``counts[i]`` times.

    Python-backed: every row points at one of the frame's few name objects (8 bytes a
    row), and ``to_numpy()`` hands out that array instead of building a string per row
    as an Arrow-backed column does. It is the same ``str`` dtype either way, so
    comparisons, ``.str``, ``map``, ``max``, ``groupby``, merges and ``itertuples``
    behave exactly alike.
    """
    objects = np.repeat(np.array(names, dtype=object), counts)
    return pd.Series(pd.array(objects, dtype=_STR_DTYPE), copy=False)
