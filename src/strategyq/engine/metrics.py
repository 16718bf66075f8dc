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
) -> dict[str, Any]:
    """All metrics, keyed as in :data:`METRIC_NAMES`."""
    trades = len(returns)
    final = float(equity[-1]) if len(equity) else initial_capital
    curve = np.concatenate([[initial_capital], equity])
    daily = curve[1:] / curve[:-1] - 1.0 if np.all(curve[:-1] > 0) else np.zeros(0)
    out: dict[str, Any] = {
        "total_return": _num(final / initial_capital - 1.0),
        "win_rate": _num(np.count_nonzero(returns > 0) / trades) if trades else None,
        "avg_return": _num(returns.mean()) if trades else None,
        "num_trades": trades,
        "median_return": _num(np.median(returns)) if trades else None,
        "best_trade": _num(returns.max()) if trades else None,
        "worst_trade": _num(returns.min()) if trades else None,
        "profit_factor": _profit_factor(pnl),
        "expectancy": _num(pnl.mean()) if trades else None,
        "max_drawdown": _max_drawdown(curve),
        "sharpe_ratio": _sharpe(daily),
        "sortino_ratio": _sortino(daily),
        "cagr": _cagr(calendar, initial_capital, final),
        "exposure": _num(exposed.mean()) if len(exposed) else 0.0,
        "avg_holding_sessions": _num(holding.mean()) if trades else None,
        "benchmark_return": benchmark,
    }
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
