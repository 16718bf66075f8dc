"""Deterministic synthetic universes (``SYN0001``, …) for scale tests and benchmarks."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from strategyq.data.bars import Bars
from strategyq.data.schema import VALUE_COLUMNS, synthetic_ticker, to_days
from strategyq.data.store import Store
from strategyq.errors import DataError

log = logging.getLogger(__name__)

SYNTH_END = date(2024, 12, 31)
"""Last session of every synthetic universe, fixed so a seed always means the same data."""

_SESSIONS_PER_YEAR = 252
_GAP_PROBABILITY = 0.02
_SPIKE_PROBABILITY = 0.03
_LATE_LISTING_SHARE = 0.1


@dataclass(frozen=True)
class SynthSummary:
    """What ``write_synthetic`` stored."""

    tickers: int
    rows: int
    first: date
    last: date


def synthetic_bars(symbols: int, years: float, seed: int, end: date = SYNTH_END) -> Bars:
    """Bars of ``symbols`` synthetic tickers over ``years`` of business days ending at ``end``.

    Daily log returns are fat-tailed (Student t, 4 degrees of freedom) around a per-ticker
    drift and volatility; about 2% of sessions open with a gap, about 3% trade a volume
    spike, and about 10% of tickers list part-way through. The same arguments always give
    the same bars.

    Raises:
        DataError: ``symbols`` or ``years`` is out of range.
    """
    if not 1 <= symbols <= 99_999:
        raise DataError(f"--symbols must be between 1 and 99999, got {symbols}")
    if not 0 < years <= 60:
        raise DataError(f"--years must be above 0 and at most 60, got {years}")
    days = pd.bdate_range(end=pd.Timestamp(end), periods=max(2, round(years * 261)))
    day_numbers = (days.values.astype("M8[D]").astype(np.int64)).astype(np.int32)
    n, t = symbols, len(days)
    rng = np.random.default_rng(seed)
    start_price = np.exp(rng.normal(np.log(50.0), 0.9, n))
    drift = rng.normal(0.06, 0.12, n) / _SESSIONS_PER_YEAR
    vol = rng.uniform(0.15, 0.6, n) / np.sqrt(_SESSIONS_PER_YEAR)

    shocks = rng.standard_t(4, (n, t)) / np.sqrt(2.0)  # unit variance
    overnight_share = 0.3
    overnight = vol[:, None] * np.sqrt(overnight_share) * shocks
    gaps = rng.random((n, t)) < _GAP_PROBABILITY
    overnight += np.where(gaps, rng.normal(0.0, 0.04, (n, t)), 0.0)
    intraday = drift[:, None] + vol[:, None] * np.sqrt(1 - overnight_share) * rng.standard_normal(
        (n, t)
    )
    overnight[:, 0] = 0.0
    log_close = np.log(start_price)[:, None] + np.cumsum(overnight + intraday, axis=1)
    close = np.exp(log_close)
    open_ = np.exp(log_close - intraday)
    wick = vol[:, None] * 0.5
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, 1.0, (n, t))) * wick)
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, 1.0, (n, t))) * wick)
    base_volume = np.exp(rng.normal(np.log(1e6), 1.0, n))
    volume = base_volume[:, None] * np.exp(rng.normal(0.0, 0.3, (n, t)))
    spikes = rng.random((n, t)) < _SPIKE_PROBABILITY
    volume *= np.where(spikes, rng.uniform(3.0, 8.0, (n, t)), 1.0)
    volume *= np.where(gaps, 2.0, 1.0)
    volume = np.round(volume)

    late = rng.random(n) < _LATE_LISTING_SHARE
    listing = np.where(late, rng.integers(0, max(1, int(t * 0.8)), n), 0)
    names = [synthetic_ticker(i + 1) for i in range(n)]
    order = sorted(range(n), key=names.__getitem__)
    listing = listing[order]
    mask = np.arange(t)[None, :] >= listing[:, None]
    grids = {"open": open_, "high": high, "low": low, "close": close, "volume": volume}
    values = {col: grid[order][mask] for col, grid in grids.items()}
    values["adj_factor"] = np.ones(values["close"].shape[0])
    return Bars(
        tickers=[names[i] for i in order],
        lengths=(t - listing).astype(np.int64),
        dates=np.broadcast_to(day_numbers, (n, t))[mask],
        values={col: values[col] for col in VALUE_COLUMNS},
    )


def write_synthetic(
    root: Path, symbols: int, years: float, seed: int, end: date = SYNTH_END
) -> SynthSummary:
    """Generate ``synthetic_bars(...)`` and upsert them into the store at ``root``."""
    bars = synthetic_bars(symbols, years, seed, end)
    Store(root).upsert(bars)
    first, last = int(bars.dates.min()), int(bars.dates.max())
    log.info("wrote %s synthetic tickers, %s rows", len(bars.tickers), bars.rows)
    return SynthSummary(
        tickers=len(bars.tickers),
        rows=bars.rows,
        first=date.fromordinal(date(1970, 1, 1).toordinal() + first),
        last=date.fromordinal(date(1970, 1, 1).toordinal() + last),
    )


__all__ = ["SYNTH_END", "SynthSummary", "synthetic_bars", "to_days", "write_synthetic"]
