"""How results read for people: metric labels, units and definitions; durations; date ranges.

One table serves the CLI, the dashboard and the HTML report, so a metric has
the same name, unit and hover text everywhere. The definitions are those of
``docs/engine.md``'s metrics table (a test keeps them equal).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

Unit = Literal["percent", "ratio", "count", "currency", "sessions", "per_year"]

_BENCHMARK = (
    "from daily returns paired with the benchmark ticker's on the sessions both have; "
    "null without a benchmark ticker"
)


@dataclass(frozen=True)
class Metric:
    """A metric's plain label, its unit and what it means."""

    name: str
    label: str
    unit: Unit
    definition: str


_TABLE: tuple[tuple[str, str, Unit, str], ...] = (
    ("total_return", "Total return", "percent", "final equity / initial capital − 1 (0)"),
    ("cagr", "CAGR (annual growth)", "percent", "(final / initial)^(1 / years) − 1 (0)"),
    (
        "sharpe_ratio",
        "Sharpe ratio",
        "ratio",
        "mean / sample std of daily returns × √252, risk-free 0; null if std is 0 (null)",
    ),
    (
        "max_drawdown",
        "Max drawdown",
        "percent",
        "min over sessions of equity / running peak − 1; ≤ 0, e.g. −0.25 (0)",
    ),
    ("win_rate", "Win rate", "percent", "share of trades with return > 0 (null)"),
    ("num_trades", "Trades", "count", "number of trades taken (0)"),
    (
        "benchmark_return",
        "Benchmark return",
        "percent",
        "the benchmark ticker's last close / first close − 1, or without one the equal-weight "
        "buy-and-hold of the backtest's symbols (null without data)",
    ),
    (
        "volatility",
        "Volatility (annual)",
        "percent",
        "sample std of daily returns × √252 (null with < 2 sessions)",
    ),
    (
        "sortino_ratio",
        "Sortino ratio",
        "ratio",
        "mean daily return / √mean(min(r, 0)²) × √252; null if no down day (null)",
    ),
    (
        "calmar_ratio",
        "Calmar ratio",
        "ratio",
        "cagr / −max_drawdown; null when there is no drawdown",
    ),
    ("avg_return", "Average trade return", "percent", "mean per-trade return (null)"),
    ("median_return", "Median trade return", "percent", "median per-trade return (null)"),
    ("best_trade", "Best trade", "percent", "highest per-trade return (null)"),
    ("worst_trade", "Worst trade", "percent", "lowest per-trade return (null)"),
    (
        "profit_factor",
        "Profit factor",
        "ratio",
        "sum of winning P&L / −sum of losing P&L; null when no trade lost (null)",
    ),
    ("expectancy", "Expectancy per trade", "currency", "mean P&L per trade in currency (null)"),
    (
        "exposure",
        "Time in market",
        "percent",
        "share of curve sessions from some trade's first held session to its exit session, "
        "counting sessions its ticker has no bar on (0)",
    ),
    (
        "avg_holding_sessions",
        "Average holding",
        "sessions",
        "mean sessions from the signal's session to the exit session (null)",
    ),
    (
        "max_drawdown_duration_sessions",
        "Longest drawdown",
        "sessions",
        "longest run of consecutive curve sessions below the running peak (0)",
    ),
    ("avg_win", "Average win", "percent", "mean return of the trades with return > 0 (null)"),
    (
        "avg_loss",
        "Average loss",
        "percent",
        "mean return of the trades with return < 0, a negative number (null)",
    ),
    ("payoff_ratio", "Payoff ratio", "ratio", "avg_win / −avg_loss (null unless both exist)"),
    (
        "trades_per_year",
        "Trades per year",
        "per_year",
        "num_trades / years (null with < 2 sessions)",
    ),
    ("num_trades_long", "Long trades", "count", "trades taken per direction (0)"),
    ("num_trades_short", "Short trades", "count", "trades taken per direction (0)"),
    ("win_rate_long", "Win rate, long", "percent", "win_rate of one direction's trades (null)"),
    ("win_rate_short", "Win rate, short", "percent", "win_rate of one direction's trades (null)"),
    (
        "avg_return_long",
        "Average return, long",
        "percent",
        "avg_return of one direction's trades (null)",
    ),
    (
        "avg_return_short",
        "Average return, short",
        "percent",
        "avg_return of one direction's trades (null)",
    ),
    (
        "alpha",
        "Alpha (annual)",
        "percent",
        "(mean daily return − beta × mean benchmark daily return) × 252; " + _BENCHMARK,
    ),
    (
        "beta",
        "Beta",
        "ratio",
        "sample cov(portfolio, benchmark) / sample var(benchmark); " + _BENCHMARK,
    ),
    ("correlation", "Correlation with benchmark", "ratio", "Pearson's r; " + _BENCHMARK),
)

METRICS: dict[str, Metric] = {row[0]: Metric(*row) for row in _TABLE}
"""Every metric of ``performance_metrics``, in the order people read them."""

HEADLINE = ("total_return", "cagr", "sharpe_ratio", "max_drawdown", "win_rate", "num_trades")
"""The figures a result page and the CLI lead with."""


def label(name: str) -> str:
    """The metric's plain label (an unknown name made readable)."""
    metric = METRICS.get(name)
    return metric.label if metric else name.replace("_", " ").capitalize()


def format_metric(name: str, value: Any) -> str:
    """``0.0865`` as ``8.65 %`` for a return, ``1.23`` for a ratio, ``1,204`` for a count."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return "—" if value is None else str(value)
    if not math.isfinite(value):
        return "—"
    unit = METRICS[name].unit if name in METRICS else "ratio"
    if unit == "percent":
        return f"{value * 100:,.2f} %"
    if unit == "count":
        return f"{value:,.0f}"
    if unit == "currency":
        return f"{value:,.2f}"
    if unit == "sessions":
        return f"{value:,.1f} sessions"
    if unit == "per_year":
        return f"{value:,.1f} / year"
    return f"{value:,.2f}"


def duration(ms: Any) -> str:
    """Milliseconds for people: ``850 ms``, ``24.0 s``, ``3 min 12 s``, ``2 h 05 min``."""
    if not isinstance(ms, int | float) or isinstance(ms, bool) or not math.isfinite(ms):
        return "—"
    if ms < 1000:
        return f"{ms:.0f} ms"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _day(value: Any) -> date | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).date()
    except ValueError:
        return None


def date_range(value: Any) -> str:
    """``["2010-01-04T00:00:00", "2012-12-31T00:00:00"]`` as
    ``2010-01-04 → 2012-12-31 (3.0 years)``."""
    if isinstance(value, list | tuple) and len(value) == 2:
        first, last = _day(value[0]), _day(value[1])
        if first and last:
            years = (last - first).days / 365.25
            span = f"{years:.1f} years" if years >= 1 else f"{(last - first).days} days"
            return f"{first} → {last} ({span})"
    if value is None:
        return "—"
    return str(value)
