"""Performance metrics of a backtest: pure functions of trades and the equity curve.

Every value is a finite Python float/int or ``None`` (undefined, e.g. a win
rate with no trades); see docs/engine.md for one line per metric.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from strategyq.engine.jsonvalues import finite_or_none
from strategyq.engine.market import FloatArray, IntArray, Market

TRADING_DAYS = 252
"""Sessions per year used to annualise Sharpe and Sortino."""

METRIC_NAMES = (
    "total_return",
    "win_rate",
    "avg_return",
    "num_trades",
    "median_return",
    "best_trade",
    "worst_trade",
    "profit_factor",
    "expectancy",
    "max_drawdown",
    "sharpe_ratio",
    "sortino_ratio",
    "cagr",
    "exposure",
    "avg_holding_sessions",
    "benchmark_return",
    "volatility",
    "calmar_ratio",
    "max_drawdown_duration_sessions",
    "avg_win",
    "avg_loss",
    "payoff_ratio",
    "trades_per_year",
    "num_trades_long",
    "num_trades_short",
    "win_rate_long",
    "win_rate_short",
    "avg_return_long",
    "avg_return_short",
    "alpha",
    "beta",
    "correlation",
)


def performance_metrics(
    *,
    returns: FloatArray,
    pnl: FloatArray,
    holding: IntArray,
    calendar: IntArray,
    equity: FloatArray,
    exposed: np.ndarray[Any, np.dtype[np.bool_]],
    initial_capital: float,
    benchmark: float | None,
    short: np.ndarray[Any, np.dtype[np.bool_]] | None = None,
    benchmark_closes: FloatArray | None = None,
    curve_metrics: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """All metrics, keyed as in :data:`METRIC_NAMES`.

    ``benchmark`` is the default (equal-weight) benchmark return; with
    ``benchmark_closes`` (a benchmark ticker's closes on each calendar session,
    NaN where it has none yet) the benchmark metrics come from that ticker.
    ``curve_metrics``: the equity curve's metrics when already computed (by
    :func:`curve_metrics_rows`, for many curves at once).
    """
    trades = len(returns)
    curve = np.concatenate([[initial_capital], equity])
    out = _trade_metrics(returns, pnl, holding, trades)
    if curve_metrics is None:
        final = float(equity[-1]) if len(equity) else initial_capital
        curve_metrics = _curve_metrics(curve, calendar, exposed, initial_capital, final, benchmark)
    out.update(curve_metrics)
    out.update(_win_loss_metrics(returns, calendar, trades, out["cagr"], out["max_drawdown"]))
    out.update(_side_metrics(returns, trades, short))
    out.update({"alpha": None, "beta": None, "correlation": None})
    if benchmark_closes is not None:
        out.update(benchmark_metrics(curve, benchmark_closes))
    return {name: out[name] for name in METRIC_NAMES}


def _trade_metrics(
    returns: FloatArray, pnl: FloatArray, holding: IntArray, trades: int
) -> dict[str, Any]:
    return {
        "win_rate": _win_rate(returns),
        "avg_return": _num(returns.mean()) if trades else None,
        "num_trades": trades,
        "median_return": _num(np.median(returns)) if trades else None,
        "best_trade": _num(returns.max()) if trades else None,
        "worst_trade": _num(returns.min()) if trades else None,
        "profit_factor": _profit_factor(pnl),
        "expectancy": _num(pnl.mean()) if trades else None,
        "avg_holding_sessions": _num(holding.mean()) if trades else None,
    }


def _curve_metrics(
    curve: FloatArray,
    calendar: IntArray,
    exposed: np.ndarray[Any, np.dtype[np.bool_]],
    initial_capital: float,
    final: float,
    benchmark: float | None,
) -> dict[str, Any]:
    daily = curve[1:] / curve[:-1] - 1.0 if np.all(curve[:-1] > 0) else np.zeros(0)
    return {
        "total_return": _num(final / initial_capital - 1.0),
        "max_drawdown": _max_drawdown(curve),
        "sharpe_ratio": _sharpe(daily),
        "sortino_ratio": _sortino(daily),
        "cagr": _cagr(calendar, initial_capital, final),
        "exposure": _num(exposed.mean()) if len(exposed) else 0.0,
        "benchmark_return": benchmark,
        "volatility": _volatility(daily),
        "max_drawdown_duration_sessions": _drawdown_duration(curve),
    }


def curve_metrics_rows(
    curves: FloatArray,
    calendar: IntArray,
    exposed: np.ndarray[Any, np.dtype[np.bool_]],
    initial_capital: float,
    benchmark: float | None,
) -> list[dict[str, Any]]:
    """:func:`_curve_metrics` of each row of ``curves`` (the initial capital first).

    Every reduction runs along a row of a C-contiguous array, which NumPy sums
    exactly as it sums that row alone: each dict equals the one-curve result.
    ``exposed`` holds each curve's sessions with a trade open.
    """
    n = curves.shape[0]
    if curves.shape[1] < 3:
        return [
            _curve_metrics(c, calendar, e, initial_capital, float(c[-1]), benchmark)
            for c, e in zip(curves, exposed, strict=True)
        ]
    final = curves[:, -1].tolist()
    positive = np.all(curves[:, :-1] > 0, axis=1).tolist()
    with np.errstate(divide="ignore", invalid="ignore"):
        daily = curves[:, 1:] / curves[:, :-1] - 1.0
        mean = daily.mean(axis=1)
        spread = daily.std(axis=1, ddof=1)
        downside = np.sqrt(np.mean(np.minimum(daily, 0.0) ** 2, axis=1))
        peak = np.maximum.accumulate(curves, axis=1)
        drawdown = np.where(peak > 0, curves / peak - 1.0, 0.0).min(axis=1)
    index = np.arange(curves.shape[1])
    last_peak = np.maximum.accumulate(np.where(curves >= peak, index, 0), axis=1)
    duration = (index - last_peak).max(axis=1).tolist()
    shown = exposed.mean(axis=1).tolist() if exposed.shape[1] else [0.0] * n
    root = math.sqrt(TRADING_DAYS)
    out = []
    for i in range(n):
        has_daily = positive[i] and curves.shape[1] - 1 >= 2
        sd, down = float(spread[i]), float(downside[i])
        low = float(drawdown[i])
        out.append(
            {
                "total_return": _num(final[i] / initial_capital - 1.0),
                "max_drawdown": low if math.isfinite(low) else 0.0,
                "sharpe_ratio": _num(mean[i] / sd * root) if has_daily and sd > 1e-15 else None,
                "sortino_ratio": (
                    _num(mean[i] / down * root) if has_daily and down > 1e-15 else None
                ),
                "cagr": _cagr(calendar, initial_capital, final[i]),
                "exposure": _num(shown[i]) if exposed.shape[1] else 0.0,
                "benchmark_return": benchmark,
                "volatility": _num(sd * root) if has_daily else None,
                "max_drawdown_duration_sessions": int(duration[i]),
            }
        )
    return out


def trade_metrics_rows(
    returns: FloatArray,
    pnl: FloatArray,
    holding: IntArray,
    short: np.ndarray[Any, np.dtype[np.bool_]],
    bounds: IntArray,
    groups: list[int],
    calendar: IntArray,
    curves: list[dict[str, Any]],
) -> list[dict[str, Any]] | None:
    """The trade metrics of many groups' trades at once, each as :func:`performance_metrics`.

    Group ``g``'s trades are ``[bounds[g], bounds[g + 1])`` of the arrays;
    ``groups`` the groups wanted, ``curves`` their curve metrics (from
    :func:`curve_metrics_rows`). Returns each wanted group's metrics other
    than the curve's and the benchmark's, or ``None`` where this does not
    apply (short trades or non-finite values: the caller measures one group at
    a time). Counts, extremes and medians are exact whatever the order; each
    sum of floats is a row of a matrix of the groups with as many terms, which
    NumPy sums exactly as it sums that group's array alone.
    """
    if short.any() or not (np.isfinite(returns).all() and np.isfinite(pnl).all()):
        return None
    wanted = np.asarray(groups, dtype=np.int64)
    k = len(wanted)
    counts = bounds[wanted + 1] - bounds[wanted]
    owner = np.repeat(np.arange(k), counts)
    # Each wanted group's trades, one group after another.
    at = np.arange(len(owner)) + np.repeat(bounds[wanted] - (np.cumsum(counts) - counts), counts)
    ret, gain, held = returns[at], pnl[at], holding[at]
    trades = counts.tolist()
    wins, losing = ret > 0, ret < 0
    n_wins = np.bincount(owner[wins], minlength=k).tolist()
    n_losses = np.bincount(owner[losing], minlength=k).tolist()
    ret_sum = _segment_sums(ret, owner, k)
    pnl_sum = _segment_sums(gain, owner, k)
    win_sum = _segment_sums(ret[wins], owner[wins], k)
    loss_sum = _segment_sums(ret[losing], owner[losing], k)
    profit = _segment_sums(gain[gain > 0], owner[gain > 0], k)
    loss = _segment_sums(gain[gain < 0], owner[gain < 0], k)
    # Integers: their sum as floats is exact in any order.
    held_sum = np.bincount(owner, weights=held, minlength=k).tolist()
    # Each group's returns sorted: the extremes, and the middle one or the mean of the
    # two middle ones ((a + b) / 2, as np.median averages them).
    ranked = np.append(ret[np.lexsort((ret, owner))], np.nan)
    first = np.cumsum(counts) - counts
    last = np.where(counts > 0, first + counts - 1, len(ret))
    low, high = ranked[first + (counts - 1) // 2], ranked[first + counts // 2]
    median = np.where(counts % 2 == 1, low, (low + high) / 2.0).tolist()
    best, worst = ranked[last].tolist(), ranked[np.where(counts > 0, first, len(ret))].tolist()
    years = float(calendar[-1] - calendar[0]) / 365.25 if len(calendar) >= 2 else 0.0
    out = []
    for i in range(k):
        t = trades[i]
        curve = curves[i]
        avg_win = _num(win_sum[i] / n_wins[i]) if n_wins[i] else None
        avg_loss = _num(loss_sum[i] / n_losses[i]) if n_losses[i] else None
        losses = -loss[i]
        cagr, drawdown = curve["cagr"], curve["max_drawdown"]
        win_rate = _num(n_wins[i] / t) if t else None
        avg_return = _num(ret_sum[i] / t) if t else None
        out.append(
            {
                "win_rate": win_rate,
                "avg_return": avg_return,
                "num_trades": t,
                "median_return": _num(median[i]) if t else None,
                "best_trade": _num(best[i]) if t else None,
                "worst_trade": _num(worst[i]) if t else None,
                "profit_factor": _num(profit[i] / losses) if losses > 0 else None,
                "expectancy": _num(pnl_sum[i] / t) if t else None,
                "avg_holding_sessions": _num(held_sum[i] / t) if t else None,
                "calmar_ratio": (
                    _num(cagr / -drawdown) if cagr is not None and drawdown < 0 else None
                ),
                "avg_win": avg_win,
                "avg_loss": avg_loss,
                "payoff_ratio": (
                    _num(avg_win / -avg_loss) if avg_win is not None and avg_loss else None
                ),
                "trades_per_year": _num(t / years) if years > 0 else None,
                "num_trades_long": t,
                "num_trades_short": 0,
                "win_rate_long": win_rate,
                "win_rate_short": None,
                "avg_return_long": avg_return,
                "avg_return_short": None,
            }
        )
    return out


def _segment_sums(values: FloatArray, owner: IntArray, k: int) -> list[float]:
    """``values[owner == i].sum()`` for each i < k (``owner`` ascending), as NumPy sums each.

    The segments with the same number of terms are rows of one C-contiguous matrix;
    summing along its rows adds each row as the sum of that array alone does.
    """
    counts = np.bincount(owner, minlength=k)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    out = np.zeros(k)
    for length in np.unique(counts).tolist():
        if length == 0:
            continue
        pick = np.flatnonzero(counts == length)
        out[pick] = values[first[pick, None] + np.arange(length)].sum(axis=1)
    return [float(v) for v in out]


def _win_loss_metrics(
    returns: FloatArray,
    calendar: IntArray,
    trades: int,
    cagr: float | None,
    drawdown: float,
) -> dict[str, Any]:
    wins, losses = returns[returns > 0], returns[returns < 0]
    avg_win = _num(wins.mean()) if len(wins) else None
    avg_loss = _num(losses.mean()) if len(losses) else None
    years = float(calendar[-1] - calendar[0]) / 365.25 if len(calendar) >= 2 else 0.0
    return {
        "calmar_ratio": _num(cagr / -drawdown) if cagr is not None and drawdown < 0 else None,
        "avg_win": avg_win,
        "avg_loss": avg_loss,
        "payoff_ratio": _num(avg_win / -avg_loss) if avg_win is not None and avg_loss else None,
        "trades_per_year": _num(trades / years) if years > 0 else None,
    }


def _side_metrics(
    returns: FloatArray, trades: int, short: np.ndarray[Any, np.dtype[np.bool_]] | None
) -> dict[str, Any]:
    is_short = np.zeros(trades, dtype=bool) if short is None else short
    return {
        "num_trades_long": int(np.count_nonzero(~is_short)),
        "num_trades_short": int(np.count_nonzero(is_short)),
        "win_rate_long": _win_rate(returns[~is_short]),
        "win_rate_short": _win_rate(returns[is_short]),
        "avg_return_long": _mean(returns[~is_short]),
        "avg_return_short": _mean(returns[is_short]),
    }


def benchmark_metrics(curve: FloatArray, closes: FloatArray) -> dict[str, float | None]:
    """``benchmark_return``, ``alpha``, ``beta`` and ``correlation`` against a ticker.

    ``curve`` is the equity curve with the initial capital first; ``closes`` is
    the benchmark's close on each of the curve's sessions (NaN before its first
    bar). Daily returns are paired on the sessions where the benchmark has a
    close on the session and on the one before; beta = cov / var (sample),
    alpha = (mean portfolio return − beta × mean benchmark return) × 252.
    """
    known = np.flatnonzero(np.isfinite(closes) & (closes > 0))
    out: dict[str, float | None] = {
        "benchmark_return": None,
        "alpha": None,
        "beta": None,
        "correlation": None,
    }
    if len(known) == 0:
        return out
    out["benchmark_return"] = _num(closes[known[-1]] / closes[known[0]] - 1.0)
    equity = curve[1:]
    pairs = known[1:][np.diff(known) == 1]
    if len(pairs) < 2 or not np.all(equity[pairs - 1] > 0):
        return out
    bench = closes[pairs] / closes[pairs - 1] - 1.0
    mine = equity[pairs] / equity[pairs - 1] - 1.0
    spread_b = float(bench.std(ddof=1))
    if not spread_b > 1e-15:
        return out
    beta = float(np.cov(mine, bench, ddof=1)[0, 1]) / spread_b**2
    out["beta"] = _num(beta)
    out["alpha"] = _num((mine.mean() - beta * bench.mean()) * TRADING_DAYS)
    spread_m = float(mine.std(ddof=1))
    if spread_m > 1e-15:
        out["correlation"] = _num(np.corrcoef(mine, bench)[0, 1])
    return out


def benchmark_closes(bench: Market, calendar: IntArray) -> FloatArray:
    """A one-ticker market's close on each calendar day, carried over days it has no bar.

    Days before its first bar are NaN.
    """
    if bench.rows == 0 or len(calendar) == 0:
        return np.full(len(calendar), np.nan)
    rows = bench.starts[0] + np.arange(bench.ends[0] - bench.starts[0])
    days = bench.day[rows]
    closes = bench.close[rows]
    valid = np.isfinite(closes) & (closes > 0)
    days, closes = days[valid], closes[valid]
    at = np.searchsorted(days, calendar, side="right") - 1
    out: FloatArray = np.where(at >= 0, closes[np.maximum(at, 0)], np.nan)
    return out


def benchmark_return(market: Market) -> float | None:
    """Equal-weight buy-and-hold: the mean over symbols of last close / first close − 1."""
    if len(market.symbols) == 0:
        return None
    first = market.close[market.starts]
    last = market.close[market.ends - 1]
    valid = np.isfinite(first) & np.isfinite(last) & (first > 0)
    if not valid.any():
        return None
    return _num(np.mean(last[valid] / first[valid] - 1.0))


def _win_rate(returns: FloatArray) -> float | None:
    return _num(np.count_nonzero(returns > 0) / len(returns)) if len(returns) else None


def _mean(values: FloatArray) -> float | None:
    return _num(values.mean()) if len(values) else None


def _volatility(daily: FloatArray) -> float | None:
    if len(daily) < 2:
        return None
    return _num(daily.std(ddof=1) * math.sqrt(TRADING_DAYS))


def _drawdown_duration(curve: FloatArray) -> int:
    """The longest run of consecutive sessions below the running peak."""
    if len(curve) == 0:
        return 0
    peak = np.maximum.accumulate(curve)
    index = np.arange(len(curve))
    last_peak = np.maximum.accumulate(np.where(curve >= peak, index, 0))
    return int((index - last_peak).max())


def _num(value: Any) -> float | None:
    return finite_or_none(float(value))


def _profit_factor(pnl: FloatArray) -> float | None:
    losses = -pnl[pnl < 0].sum()
    if losses <= 0:
        return None
    return _num(pnl[pnl > 0].sum() / losses)


def _max_drawdown(curve: FloatArray) -> float:
    peak = np.maximum.accumulate(curve)
    with np.errstate(divide="ignore", invalid="ignore"):
        drawdown = np.where(peak > 0, curve / peak - 1.0, 0.0)
    value = float(drawdown.min()) if len(drawdown) else 0.0
    return value if math.isfinite(value) else 0.0


def _sharpe(daily: FloatArray) -> float | None:
    if len(daily) < 2:
        return None
    spread = float(daily.std(ddof=1))
    if not spread > 1e-15:
        return None
    return _num(daily.mean() / spread * math.sqrt(TRADING_DAYS))


def _sortino(daily: FloatArray) -> float | None:
    if len(daily) < 2:
        return None
    downside = float(np.sqrt(np.mean(np.minimum(daily, 0.0) ** 2)))
    if not downside > 1e-15:
        return None
    return _num(daily.mean() / downside * math.sqrt(TRADING_DAYS))


def _cagr(calendar: IntArray, initial: float, final: float) -> float | None:
    if len(calendar) < 2 or final <= 0:
        return 0.0 if final == initial else None
    years = float(calendar[-1] - calendar[0]) / 365.25
    if years <= 0:
        return None
    return _num((final / initial) ** (1.0 / years) - 1.0)
