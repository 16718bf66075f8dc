"""Signal picking: which of a strategy's instances are tradable entries and exits, as arrays.

An instance counts when it is active, dated, on a ticker with bars, and on or
after the backtest's first day (earlier ones, on warm-up rows, are counted
and dropped). An instance with ``exit`` true is an exit signal, any other an
entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from strategyq.engine.columnar import ColumnSignals
from strategyq.engine.instances import NormalizedInstances, normalize_instances
from strategyq.engine.jsonvalues import date_to_day
from strategyq.engine.market import FloatArray, IntArray, Market
from strategyq.engine.simulate import BoolArray, ExitSignals


@dataclass(frozen=True)
class SignalColumns:
    """The tradable entries as arrays (``index``: each one's instance), and the exits."""

    codes: IntArray
    days: IntArray
    short: BoolArray
    scores: FloatArray
    weights: FloatArray | None
    index: IntArray
    exits: ExitSignals
    exit_index: IntArray
    undated: int
    before_start: int


@dataclass
class PickedSignals:
    """The instance index, ticker code and day of each kept entry and exit, and the counts."""

    index: list[int] = field(default_factory=list)
    codes: list[int] = field(default_factory=list)
    days: list[int] = field(default_factory=list)
    exit_index: list[int] = field(default_factory=list)
    exit_codes: list[int] = field(default_factory=list)
    exit_days: list[int] = field(default_factory=list)
    undated: int = 0
    before_start: int = 0


def normalized_instances(instances: Any, market: Market) -> NormalizedInstances:
    """``instances`` as :class:`NormalizedInstances` (as they are when already built)."""
    if isinstance(instances, NormalizedInstances):
        return instances
    return normalize_instances(instances, known_tickers=market.symbols)


def pick_signals(
    normalized: NormalizedInstances, market: Market, first_day: int | None
) -> PickedSignals:
    """The active, dated signals on known tickers from ``first_day`` on: entries and exits."""
    code_of = market.code_of()
    picked = PickedSignals()
    exits = normalized.exits or [False] * normalized.total
    for i, (ticker, day, on, leave) in enumerate(
        zip(normalized.tickers, normalized.days, normalized.active, exits, strict=True)
    ):
        if not on:
            continue
        code = code_of.get(ticker)
        if code is None:
            continue
        if day is None:
            picked.undated += 1
            continue
        number = date_to_day(day)
        if first_day is not None and number < first_day:
            picked.before_start += 1
            continue
        if leave:
            picked.exit_index.append(i)
            picked.exit_codes.append(code)
            picked.exit_days.append(number)
        else:
            picked.index.append(i)
            picked.codes.append(code)
            picked.days.append(number)
    return picked


def signal_columns(
    normalized: NormalizedInstances, market: Market, first_day: int | None = None
) -> SignalColumns:
    """Per-signal arrays of the active, dated entries and exits on known tickers.

    Signals dated before ``first_day`` (warm-up rows) are counted, not kept.
    """
    picked = pick_signals(normalized, market, first_day)
    index, codes, days = picked.index, picked.codes, picked.days
    exit_index, exit_codes, exit_days = picked.exit_index, picked.exit_codes, picked.exit_days
    undated, before = picked.undated, picked.before_start
    idx = np.asarray(index, dtype=np.int64)
    short_all = np.asarray(normalized.short, dtype=bool)
    short = short_all[idx] if len(idx) else np.zeros(0, bool)
    scores: FloatArray = np.asarray(
        [np.nan if s is None else s for s in normalized.scores], dtype=np.float64
    )
    weights: FloatArray | None = None
    if normalized.weights and any(w is not None for w in normalized.weights):
        every = np.asarray(
            [np.nan if w is None else w for w in normalized.weights], dtype=np.float64
        )
        weights = every[idx] if len(idx) else np.zeros(0)
    exit_idx = np.asarray(exit_index, dtype=np.int64)
    leaving = ExitSignals(
        codes=np.asarray(exit_codes, dtype=np.int64),
        days=np.asarray(exit_days, dtype=np.int64),
        short=short_all[exit_idx] if len(exit_idx) else np.zeros(0, bool),
    )
    return SignalColumns(
        codes=np.asarray(codes, dtype=np.int64),
        days=np.asarray(days, dtype=np.int64),
        short=short,
        scores=scores[idx] if len(idx) else np.zeros(0),
        weights=weights,
        index=idx,
        exits=leaving,
        exit_index=exit_idx,
        undated=undated,
        before_start=before,
    )


def columns_from(fast: ColumnSignals) -> SignalColumns:
    """The signal arrays of :func:`signal_columns` from column-wise signals (no weights,
    scores or shorts: those fields take the row path; no undated ones: a date that does
    not parse does too)."""
    entries = len(fast.entry_codes)
    return SignalColumns(
        codes=fast.entry_codes,
        days=fast.entry_days,
        short=np.zeros(entries, dtype=bool),
        scores=np.full(entries, np.nan),
        weights=None,
        index=fast.entry_index,
        exits=ExitSignals(
            codes=fast.exit_codes,
            days=fast.exit_days,
            short=np.zeros(len(fast.exit_codes), dtype=bool),
        ),
        exit_index=fast.exit_index,
        undated=0,
        before_start=fast.before_start,
    )
