"""Technical indicators, computed for all tickers at once.

Bars arrive flat (ticker after ticker). They are laid out as a 2-D array, one
ticker per row, left-aligned and padded with NaN, so every rolling window and
every recursive average runs along the time axis for all tickers in one NumPy
operation and can never cross from one ticker into the next. Each value uses
only its own row and the rows before it (no look-ahead); padding sits after a
ticker's last session, so it cannot leak backwards. Formulas: docs/data.md.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from strategyq.data.bars import FloatArray, IntArray

SMA_WINDOWS = (5, 10, 20, 50, 200)
VOLUME_WINDOW = 20
EMA_FAST, EMA_SLOW, MACD_SIGNAL = 12, 26, 9
WILDER_WINDOW = 14
BB_WINDOW, BB_WIDTH = 20, 2.0
RANGE_WINDOW = 20


class Layout:
    """Maps flat per-ticker arrays to a (tickers × sessions) grid and back.

    Args:
        lengths: Rows per ticker, each at least 1.
    """

    def __init__(self, lengths: IntArray) -> None:
        self.lengths = lengths
        self.tickers = int(lengths.shape[0])
        self.width = int(lengths.max()) if self.tickers else 0
        self.rows = int(lengths.sum())
        self.full = self.rows == self.tickers * self.width
        # Flat grid position of every flat row, used unless the grid has no padding.
        self.grid_index: IntArray | None = None
        if not self.full:
            self.grid_index = grid_positions(lengths, np.zeros_like(lengths), self.width)

    def grid(self, flat: FloatArray) -> FloatArray:
        """``flat`` as a (tickers, width) grid padded with NaN (a view when nothing is padded)."""
        if self.grid_index is None:
            return flat.reshape(self.tickers, self.width)
        out = np.full(self.tickers * self.width, np.nan)
        out[self.grid_index] = flat
        return out.reshape(self.tickers, self.width)


def grid_positions(lengths: IntArray, skip: IntArray, width: int) -> IntArray:
    """Flat grid positions of rows ``skip[i]..lengths[i]-1`` of each ticker ``i``."""
    counts = lengths - skip
    total = int(counts.sum())
    starts = np.arange(lengths.shape[0], dtype=np.int64) * width + skip
    first_out = np.zeros(lengths.shape[0], dtype=np.int64)
    np.cumsum(counts[:-1], out=first_out[1:])
    return np.repeat(starts - first_out, counts) + np.arange(total, dtype=np.int64)


def compute(
    layout: Layout,
    open_: FloatArray,
    high: FloatArray,
    low: FloatArray,
    close: FloatArray,
    volume: FloatArray,
    wanted: frozenset[str] | None = None,
) -> Iterator[tuple[str, FloatArray]]:
    """Yield ``(column, grid)`` for every indicator, in ``INDICATOR_COLUMNS`` order.

    Grids are yielded one at a time so a caller can copy each out and let it go,
    which keeps peak memory near one grid per input plus a few working grids.
    With ``wanted``, only those columns are yielded, and a family of indicators
    none of which is wanted is not computed at all.
    """

    def some(*names: str) -> bool:
        return wanted is None or not wanted.isdisjoint(names)

    def keep(items: Iterator[tuple[str, FloatArray]]) -> Iterator[tuple[str, FloatArray]]:
        return (item for item in items if wanted is None or item[0] in wanted)

    bollinger = ("bb_middle", "bb_upper", "bb_lower", "bb_width", "bb_position")
    with np.errstate(divide="ignore", invalid="ignore"):
        o, h, lo, c, v = (layout.grid(x) for x in (open_, high, low, close, volume))
        prev = _shift(c, 1)
        if some("returns", "log_returns", "gap", "gap_pct"):
            yield from keep(_returns_and_gaps(o, c, prev))
        if some("volume_sma", "volume_ratio"):
            yield from keep(_volume(v))
        smas = [n for n in SMA_WINDOWS if some(f"sma_{n}")]
        if some(*bollinger) and BB_WINDOW not in smas:
            smas.append(BB_WINDOW)
        sma = {n: rolling_mean(c, n) for n in smas}
        for n in SMA_WINDOWS:
            if some(f"sma_{n}"):
                yield f"sma_{n}", sma[n]
        momentum = ("ema_12", "ema_26", "macd", "macd_signal", "macd_histogram", "rsi")
        if some(*momentum, "true_range", "atr"):
            yield from keep(_momentum(h, lo, c, prev))
        middle = sma.get(BB_WINDOW)
        del sma
        if middle is not None and some(*bollinger):
            yield from keep(_bollinger(c, middle))
        del middle
        if some("price_position"):
            highest = rolling_extreme(h, RANGE_WINDOW, np.maximum)
            lowest = rolling_extreme(lo, RANGE_WINDOW, np.minimum)
            yield "price_position", _safe_divide(c - lowest, highest - lowest)


def _returns_and_gaps(
    o: FloatArray, c: FloatArray, prev: FloatArray
) -> Iterator[tuple[str, FloatArray]]:
    ratio = c / prev
    yield "returns", ratio - 1.0
    yield "log_returns", np.log(ratio)
    del ratio
    yield "gap", o - prev
    yield "gap_pct", (o / prev - 1.0) * 100.0


def _volume(v: FloatArray) -> Iterator[tuple[str, FloatArray]]:
    volume_sma = rolling_mean(v, VOLUME_WINDOW)
    yield "volume_sma", volume_sma
    yield "volume_ratio", _safe_divide(v, volume_sma)


def _momentum(
    h: FloatArray, lo: FloatArray, c: FloatArray, prev: FloatArray
) -> Iterator[tuple[str, FloatArray]]:
    """EMAs, MACD, RSI and ATR: the indicators built on recursive averages."""
    true_range = np.fmax(h - lo, np.fmax(np.abs(h - prev), np.abs(lo - prev)))
    delta = c - prev
    gain = np.where(delta > 0, delta, 0.0)
    loss = np.where(delta < 0, -delta, 0.0)
    ema_fast, ema_slow, avg_gain, avg_loss, atr = _recursive_averages(c, gain, loss, true_range)
    yield "ema_12", ema_fast
    yield "ema_26", ema_slow
    macd = ema_fast - ema_slow
    del ema_fast, ema_slow
    signal = ewm(macd, 2.0 / (MACD_SIGNAL + 1))
    yield "macd", macd
    yield "macd_signal", signal
    yield "macd_histogram", macd - signal
    del macd, signal
    rsi = 100.0 * avg_gain / (avg_gain + avg_loss)
    # Neither gains nor losses over the window: no momentum either way.
    rsi[(avg_gain == 0) & (avg_loss == 0)] = 50.0
    yield "rsi", rsi
    del rsi, avg_gain, avg_loss
    yield "true_range", true_range
    yield "atr", atr


def _bollinger(c: FloatArray, middle: FloatArray) -> Iterator[tuple[str, FloatArray]]:
    band = BB_WIDTH * rolling_std(c, BB_WINDOW)
    upper, lower = middle + band, middle - band
    yield "bb_middle", middle
    yield "bb_upper", upper
    yield "bb_lower", lower
    yield "bb_width", _safe_divide(upper - lower, middle)
    yield "bb_position", _safe_divide(c - lower, upper - lower)


def _shift(x: FloatArray, n: int) -> FloatArray:
    out = np.full_like(x, np.nan)
    if n < x.shape[1]:
        out[:, n:] = x[:, :-n]
    return out


def _safe_divide(a: FloatArray, b: FloatArray) -> FloatArray:
    # NaN rather than ±inf where the denominator is zero: results must stay plain JSON.
    out = a / b
    out[b == 0] = np.nan
    return out


def rolling_mean(x: FloatArray, n: int) -> FloatArray:
    """Mean of the last ``n`` values along axis 1; NaN until ``n`` values exist."""
    # Cumulative sums of values relative to the first session keep the sums small,
    # so the difference of two sums loses no precision on long histories.
    base = x[:, :1]
    sums = np.cumsum(x - base, axis=1)
    out = sums.copy()
    out[:, n:] -= sums[:, :-n]
    out /= n
    out += base
    out[:, : n - 1] = np.nan
    return out


def rolling_std(x: FloatArray, n: int) -> FloatArray:
    """Population standard deviation (ddof 0) of the last ``n`` values along axis 1."""
    # Two passes: the window's mean first, then the mean of squared deviations from
    # it, one lag at a time. E[x²] − E[x]² from running sums loses the small variance
    # of a stock that sits still at a price it climbed to (relative error 1e-4 after
    # 1 → 1000 then ±0.01); n passes over the array are exact to rounding.
    mean = rolling_mean(x, n)
    total = np.zeros_like(x)
    deviation = np.empty_like(x)
    sessions = x.shape[1]
    for lag in range(min(n, sessions)):
        np.subtract(x[:, : sessions - lag], mean[:, lag:], out=deviation[:, lag:])
        deviation[:, :lag] = np.nan
        np.multiply(deviation, deviation, out=deviation)
        total += deviation
    total /= n
    return np.sqrt(total)


def rolling_extreme(x: FloatArray, n: int, pick: np.ufunc) -> FloatArray:
    """Max (``np.maximum``) or min (``np.minimum``) of the last ``n`` values along axis 1."""
    # Doubling: windows of 1, 2, 4, 8, … built from two shifted copies each; any
    # window reaching before the first session is NaN because NaN propagates.
    windows: dict[int, FloatArray] = {1: x}
    size = 1
    while size * 2 <= n:
        windows[size * 2] = pick(windows[size], _shift(windows[size], size))
        size *= 2
    out = windows[size]
    covered = size
    for part in sorted(windows, reverse=True):
        if covered + part <= n:
            out = pick(out, _shift(windows[part], covered))
            covered += part
    return out


def ewm(x: FloatArray, alpha: float) -> FloatArray:
    """Exponential average ``e[t] = alpha*x[t] + (1-alpha)*e[t-1]``, ``e[0] = x[0]``."""
    series = x.T.copy()  # a copy, also when x has one row and x.T is already contiguous
    _recurse(series, np.full(series.shape[1], alpha))
    return series.T


def _recurse(
    series: FloatArray, alpha: FloatArray, seeds: dict[int, FloatArray] | None = None
) -> None:
    """Run the exponential recursion in place over a (time, series) array.

    ``seeds`` maps a session index to replacement values (NaN keeps the recursion)
    used by Wilder averages, which start from a simple mean.
    """
    keep = 1.0 - alpha
    series[1:] *= alpha  # row 0 stays x[0], the start of every average
    step = np.empty(series.shape[1])
    seeds = seeds or {}
    for t in range(1, series.shape[0]):
        np.multiply(series[t - 1], keep, out=step)
        series[t] += step
        seed = seeds.get(t)
        if seed is not None:
            np.copyto(series[t], seed, where=~np.isnan(seed))


def _recursive_averages(
    close: FloatArray, gain: FloatArray, loss: FloatArray, true_range: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
    """EMA 12 and 26 of close, Wilder averages of gain, loss and true range, in one pass."""
    k, width = close.shape
    stacked = np.empty((width, 5, k))
    for i, grid in enumerate((close, close, gain, loss, true_range)):
        stacked[:, i, :] = grid.T
    series = stacked.reshape(width, 5 * k)
    wilder = 1.0 / WILDER_WINDOW
    alpha = np.repeat([2.0 / (EMA_FAST + 1), 2.0 / (EMA_SLOW + 1), wilder, wilder, wilder], k)
    seeds: dict[int, FloatArray] = {}
    n = WILDER_WINDOW
    if width > n:
        # RSI averages start at session n with the mean of the first n changes (1..n).
        seed = np.full((5, k), np.nan)
        seed[2] = gain[:, 1 : n + 1].mean(axis=1)
        seed[3] = loss[:, 1 : n + 1].mean(axis=1)
        seeds[n] = seed.reshape(-1)
    if width >= n:
        # ATR starts at session n-1 with the mean of the first n true ranges (0..n-1).
        seed = np.full((5, k), np.nan)
        seed[4] = true_range[:, :n].mean(axis=1)
        seeds[n - 1] = seed.reshape(-1)
    _recurse(series, alpha, seeds)
    out = stacked.transpose(1, 2, 0)  # (5, k, width)
    avg_gain, avg_loss, atr = out[2].copy(), out[3].copy(), out[4].copy()
    avg_gain[:, :n] = np.nan
    avg_loss[:, :n] = np.nan
    atr[:, : n - 1] = np.nan
    return out[0], out[1], avg_gain, avg_loss, atr
