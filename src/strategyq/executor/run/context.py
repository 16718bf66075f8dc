"""What every task run shares: the run's context, the engine's view of the data, data notes.

This runs inside the executor process (no Redis, no secrets).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from strategyq.data import LoadResult, MarketData
from strategyq.data.columns_used import indicators_used
from strategyq.engine import Market, market_from_frame
from strategyq.engine.market import REQUIRED_COLUMNS, market_from_sorted_columns
from strategyq.errors import DataError
from strategyq.protocol.results import Stage
from strategyq.sandbox.forkclient import ForkClient
from strategyq.sandbox.shared_frame import FrameRefused, SealedFrame, SharedFrame
from strategyq.settings import SandboxLimits

log = logging.getLogger(__name__)

StageCallback = Callable[[Stage], None]

# Enough history for sma_200 plus the slower indicators to settle.
WARMUP_SESSIONS = 250

ENGINE_BARS = tuple(c for c in REQUIRED_COLUMNS if c not in ("ticker", "date"))
"""The bar columns the engine reads: the executor's frames keep only these (volume and
``adj_factor`` would be a third of a bars-only frame, held in the cache for nothing)."""


# The engine's flat view of a cached frame, kept as long as the loader keeps that
# frame: a repeated task (the same symbols and range) skips rebuilding it. Frames
# above the row cap are rebuilt each time, so the memo never holds much memory.
MARKET_MEMO_MAX_ROWS = 1_000_000
_markets: dict[int, tuple[weakref.ref[LoadResult], Market]] = {}


@dataclass(frozen=True)
class SharedLoad(LoadResult):
    """A load whose rows the engine reads from the sandbox host's sealed memfd.

    ``frame`` has the rows' index only (no column): the rows are ``market``'s,
    whose prices are read-only views of the memfd. ``ranges`` holds the stored
    range of the ``empty`` tickers only (what their data messages name).
    """

    market: Market | None = None


# The engine's view of the last small shared frame, by the memfd's inode: a sweep's
# chunks (the same memfd from the host's cache) skip rebuilding it. The entry's
# mapping keeps that memfd alive, so its inode cannot name another frame meanwhile;
# it may outlive the host's cache entry, so only a small memfd is kept this way.
_shared_markets: dict[tuple[int, int], tuple[SealedFrame, Market]] = {}
SHARED_MEMO_MAX_BYTES = 64 * 1024 * 1024


def shared_market(frame: SharedFrame) -> Market | None:
    """The engine's view of a frame in the sandbox host's memfd, bit for bit the one
    ``market_from_frame`` builds from the executor's own load of the same request;
    None when that frame cannot serve (the caller loads its own copy then).

    The memfd is read only after its seals (no write, grow, shrink or new seal) are
    verified, so nothing a sandbox child does can change what the engine reads.
    """
    try:
        st = os.fstat(frame.fd)
        memo = _shared_markets.get((st.st_dev, st.st_ino))
        if memo is not None:
            return memo[1]
        sealed = SealedFrame.open(frame.fd)
        if sealed.rows == 0:
            return None
        market = market_from_sorted_columns(
            sealed.strings("ticker"),
            sealed.numbers("date", "<M8[ns]"),
            (
                sealed.numbers("open", "<f8"),
                sealed.numbers("high", "<f8"),
                sealed.numbers("low", "<f8"),
                sealed.numbers("close", "<f8"),
            ),
        )
    except (FrameRefused, OSError) as exc:
        log.warning("the sandbox host's frame was not used (%s); loading a copy", exc)
        return None
    small = sealed.rows <= MARKET_MEMO_MAX_ROWS and len(sealed.mapping) <= SHARED_MEMO_MAX_BYTES
    if market is not None and small:
        _shared_markets.clear()
        _shared_markets[sealed.inode] = (sealed, market)
    return market


def shared_load(meta: dict[str, Any], frame: SharedFrame | None) -> LoadResult | None:
    """The load the host's reply describes, when the engine can use its frame: its
    notes and the engine's view of its rows (an empty frame when it has none; the
    ``ranges`` of the ``empty`` tickers only, as :class:`SharedLoad`'s)."""
    notes = meta.get("load")
    if frame is None or not isinstance(notes, dict):
        return None
    try:
        rows = int(meta["shape"][0])
        missing = [str(t) for t in notes["missing"]]
        empty = [str(t) for t in notes["empty"]]
        ranges = {
            str(t): (dt.date.fromisoformat(a), dt.date.fromisoformat(b))
            for t, (a, b) in notes["ranges"].items()
        }
    except (KeyError, TypeError, ValueError):
        return None
    if rows == 0:
        return LoadResult(frame=pd.DataFrame(), missing=missing, empty=empty, ranges=ranges)
    market = shared_market(frame)
    if market is None or market.rows != rows:
        return None
    index = pd.DataFrame(index=pd.RangeIndex(rows))
    return SharedLoad(frame=index, missing=missing, empty=empty, ranges=ranges, market=market)


def engine_market(loaded: LoadResult) -> Market:
    """``market_from_frame(loaded.frame)``, built once per loaded (cached) frame."""
    if isinstance(loaded, SharedLoad) and loaded.market is not None:
        return loaded.market
    key = id(loaded)
    entry = _markets.get(key)
    if entry is not None and entry[0]() is loaded:
        return entry[1]
    market = market_from_frame(loaded.frame)
    if len(loaded.frame) <= MARKET_MEMO_MAX_ROWS:
        _markets[key] = (weakref.ref(loaded, lambda _ref: _markets.pop(key, None)), market)
    return market


def did_you_mean(missing: Sequence[str], market: MarketData | None) -> str:
    """`` (did you mean APPL → AAPL?)`` when stored tickers are close to missing ones."""
    from strategyq.data.symbols import did_you_mean as nearest_names

    if not missing or market is None:
        return ""
    hint = nearest_names(missing, market.tickers())
    return f" (did you mean {hint}?)" if hint else ""


def refuse_missing(symbols: Sequence[str], market: MarketData) -> None:
    """``strict_symbols``: fail, before the strategy runs, when a symbol is not stored."""
    stored = set(market.tickers())
    missing = [s for s in dict.fromkeys(x.strip().upper() for x in symbols) if s not in stored]
    if missing:
        raise DataError(
            f"not in the store: {', '.join(missing[:20])}{did_you_mean(missing[:20], market)}; "
            "strict_symbols is set, so nothing ran. Fix or drop these symbols, import their "
            "bars (strategyq data import), or leave strict_symbols off to skip them"
        )


def no_data_message(
    symbols: tuple[str, ...], loaded: LoadResult, what: str, market: MarketData | None = None
) -> str:
    parts = []
    if loaded.missing:
        hint = did_you_mean(loaded.missing[:20], market)
        parts.append(f"not in the store: {', '.join(loaded.missing[:20])}{hint}")
    if loaded.empty:
        ranges = "; ".join(
            f"{t} {loaded.ranges[t][0]}..{loaded.ranges[t][1]}"
            for t in loaded.empty[:20]
            if t in loaded.ranges
        )
        parts.append(f"no sessions in the range ({ranges})" if ranges else "no sessions")
    detail = "; ".join(parts) or "no rows"
    return (
        f"no market data for {what} {', '.join(symbols[:20])}: {detail}. "
        "Load data with 'strategyq data sample', 'strategyq data import' or "
        "'strategyq data synth', or pick symbols and dates that the store holds"
    )


def data_warnings(loaded: LoadResult, market: MarketData | None = None) -> list[str]:
    warnings = []
    if loaded.missing:
        hint = did_you_mean(loaded.missing, market)
        warnings.append(f"symbols not in the store, skipped: {', '.join(loaded.missing)}{hint}")
    if loaded.empty:
        warnings.append(
            f"symbols with no sessions in the range, skipped: {', '.join(loaded.empty)}"
        )
    return warnings


@dataclass(frozen=True)
class RunContext:
    """What one task run needs besides its arguments."""

    market: MarketData
    fork: ForkClient
    limits: SandboxLimits
    stage: StageCallback
    cancel_fd: int | None
    insecure: bool
    max_instances: int
    chunk_size: int
    """Strategy calls per chunk of a sweep."""
    max_fanout_bytes: int = 16 * 1024 * 1024
    """A sweep's chunk messages, all together, at most (the result cap they travel under)."""

    def strategy_on(
        self,
        code: str,
        symbols: tuple[str, ...],
        request: dict[str, Any],
        what: str,
        *,
        params: dict[str, Any] | None = None,
        runs: list[dict[str, Any]] | None = None,
        keep_columns: bool = False,
        strict: bool = False,
    ) -> tuple[LoadResult, Any, list[int]]:
        """Load the engine's frame, then run the strategy in a sandbox on the same data.

        Returns the engine's frame (bars only), the strategy's instances (see
        :meth:`ForkClient.run` for their forms) and the shape of the frame the
        strategy saw. What the strategy printed is in
        ``self.fork.last_logs``.
        """
        self.stage(Stage.LOADING_DATA)
        if strict:
            refuse_missing(symbols, self.market)
        # Only the indicators the strategy can read (all when it may read any).
        used = indicators_used(code)
        request = {**request, "indicators": True if used is None else list(used)}
        self.fork.prepare(request, self.limits, insecure_no_sandbox=self.insecure, source=code)
        # The engine reads the rows the sandbox host loaded for the child, from its
        # sealed memfd; a frame it cannot use (or none) means a load of our own.
        meta, frame = self.fork.prepared_frame()
        try:
            loaded: LoadResult | None = None
            if frame is None or not isinstance(meta.get("load"), dict):
                loaded = self.own_load(request)
            elif meta.get("shape", [None])[0] == 0:
                loaded = shared_load(meta, frame) or self.own_load(request)
            if loaded is not None:
                self._refuse_empty(loaded, symbols, what)
            self.stage(Stage.RUNNING_STRATEGY)
            instances, answered = self.fork.run(
                code,
                request,
                self.limits,
                cancel_fd=self.cancel_fd,
                insecure_no_sandbox=self.insecure,
                params=params,
                runs=runs,
                keep_columns=keep_columns,
            )
            if loaded is None:
                # Built once the child has answered, as it was from our own frame: the
                # market's index arrays never sit beside the child's memory.
                loaded = shared_load(meta, frame) or self.own_load(request)
                self._refuse_empty(loaded, symbols, what)
        finally:
            if frame is not None:
                frame.close()  # the mapping, if any, holds the pages
        self.stage(Stage.COMPUTING_METRICS)
        return loaded, instances, list(answered["shape"])

    def _refuse_empty(self, loaded: LoadResult, symbols: tuple[str, ...], what: str) -> None:
        if loaded.frame.empty and not isinstance(loaded, SharedLoad):
            raise DataError(no_data_message(symbols, loaded, what, self.market))

    def own_load(self, request: dict[str, Any]) -> LoadResult:
        """The engine's frame of ``request`` loaded by the executor itself (bars only)."""
        return self.market.load(
            request["symbols"],
            request["start"],
            request["end"],
            adjusted=request["adjusted"],
            warmup_sessions=request["warmup_sessions"],
            lookback_sessions=request["lookback_sessions"],
            history_sessions=request.get("history_sessions", 0),
            # The engine needs prices only; the strategy's frame (with indicators)
            # lives in the sandbox host.
            indicators=False,
            bar_columns=ENGINE_BARS,
        )
