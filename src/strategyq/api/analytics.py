"""Views of a backtest's equity curve: monthly returns, rolling Sharpe and volatility, and the
benchmark's own headline figures.

Pure functions of the stored result (its ``equity_curve`` and ``benchmark_curve``), with the
engine's formulas (``docs/engine.md``): daily returns are session-to-session, annualised
with 252 sessions a year; CAGR counts calendar days / 365.25.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from strategyq.api import charts

# numpy is imported by the functions that compute (a backtest's result page calls them),
# not with the module: the pages import this one, and `strategyq serve` starts without it.
if TYPE_CHECKING:
    import numpy as np

TRADING_DAYS = 252
ROLLING_SESSIONS = 63
"""The rolling window: about three months of sessions."""
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
BENCHMARK_FIGURES = ("total_return", "cagr", "sharpe_ratio", "max_drawdown")
"""Headline figures the benchmark has too; win rate and trades have no benchmark meaning."""


def _curve(data: Mapping[str, Any]) -> tuple[list[str], np.ndarray[Any, Any]] | None:
    curve = data.get("equity_curve")
    if not isinstance(curve, Mapping):
        return None
    dates, values = curve.get("dates"), curve.get("values")
    if not isinstance(dates, list) or not isinstance(values, list):
        return None
    if len(dates) != len(values) or len(values) < 2:
        return None
    days = [_day(d) for d in dates]
    if any(d is None for d in days):
        return None
    return [d for d in days if d is not None], _floats(values)


_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def _day(value: Any) -> str | None:
    """``YYYY-MM-DD`` of a stored date, or None for anything else (a record of any shape)."""
    text = str(value)[:10]
    return text if _DAY.fullmatch(text) and "01" <= text[5:7] <= "12" else None


def _floats(values: Sequence[Any]) -> np.ndarray[Any, Any]:
    import numpy as np

    numbers = [
        float(v) if isinstance(v, int | float) and not isinstance(v, bool) else np.nan
        for v in values
    ]
    return np.array(numbers, dtype=np.float64)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def monthly_returns(data: Mapping[str, Any]) -> dict[str, Any] | None:
    """Each calendar month's return: its last equity / the previous month's last − 1.

    The first month compares with the curve's first value. Returns ``{"years": [...],
    "values": [[12 fractions or None] per year], "yearly": [fraction per year]}``.
    """
    curve = _curve(data)
    if curve is None:
        return None
    dates, values = curve
    month_end: dict[tuple[int, int], float] = {}
    for day, value in zip(dates, values.tolist(), strict=True):
        if math.isfinite(value):
            month_end[(int(day[:4]), int(day[5:7]))] = value
    first = next((v for v in values.tolist() if math.isfinite(v)), None)
    if not month_end or first is None:
        return None
    years = list(range(min(k[0] for k in month_end), max(k[0] for k in month_end) + 1))
    grid: list[list[float | None]] = [[None] * 12 for _ in years]
    yearly: list[float | None] = []
    previous = first
    year_start = first
    current_year = years[0]
    for year, month in sorted(month_end):
        if year != current_year:
            yearly.append(_ratio(previous, year_start))
            year_start, current_year = previous, year
        end = month_end[(year, month)]
        grid[year - years[0]][month - 1] = _ratio(end, previous)
        previous = end
    yearly.append(_ratio(previous, year_start))
    # Years with no session at all (a gap in the data) have no yearly figure.
    seen = {k[0] for k in month_end}
    full_yearly: list[float | None] = []
    kept = iter(yearly)
    for year in years:
        full_yearly.append(next(kept) if year in seen else None)
    return {"years": years, "values": grid, "yearly": full_yearly}


def _ratio(end: float, start: float) -> float | None:
    return _finite(end / start - 1.0) if start > 0 else None


def monthly_figure(months: Mapping[str, Any]) -> dict[str, Any]:
    """The monthly returns as a year × month heatmap (percent), the year's return in its label."""
    values = months["values"]
    z = [[None if v is None else round(v * 100, 6) for v in row] for row in values]
    text = [["" if v is None else f"{v * 100:.1f}" for v in row] for row in values]
    labels = [
        f"{year}" + ("" if total is None else f" ({total * 100:+.1f} %)")
        for year, total in zip(months["years"], months["yearly"], strict=True)
    ]
    bound = max((abs(v) for row in z for v in row if v is not None), default=1.0) or 1.0
    return {
        "data": [
            {
                "type": "heatmap",
                "x": list(MONTHS),
                "y": labels,
                "z": z,
                "text": text,
                "texttemplate": "%{text}",
                "hovertemplate": "%{y} %{x}: %{z:.2f} %<extra></extra>",
                "colorscale": [[0.0, "#d73027"], [0.5, "#f7f7f7"], [1.0, "#1a9850"]],
                "zmin": -bound,
                "zmax": bound,
                "colorbar": {"title": {"text": "%"}},
                "xgap": 1,
                "ygap": 1,
            }
        ],
        "layout": {
            "height": max(200, 60 + 28 * len(labels)),
            "margin": {"l": 110, "r": 20, "t": 10, "b": 30},
            "xaxis": {"type": "category", "side": "top"},
            "yaxis": {"type": "category", "autorange": "reversed"},
            "font": {"size": 12},
        },
    }


def rolling(data: Mapping[str, Any], window: int = ROLLING_SESSIONS) -> dict[str, Any] | None:
    """Rolling annualised Sharpe ratio and volatility over ``window`` daily returns.

    The value on a date uses the ``window`` returns that end on it (None before the
    first full window, or where the returns do not vary).
    """
    import numpy as np

    curve = _curve(data)
    if curve is None:
        return None
    dates, values = curve
    with np.errstate(divide="ignore", invalid="ignore"):
        daily = values[1:] / values[:-1] - 1.0
    if len(daily) < window:
        return None
    windows = np.lib.stride_tricks.sliding_window_view(daily, window)
    mean = windows.mean(axis=1)
    spread = windows.std(axis=1, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        sharpe = np.where(spread > 1e-15, mean / spread * math.sqrt(TRADING_DAYS), np.nan)
    volatility = spread * math.sqrt(TRADING_DAYS)
    return {
        "window": window,
        "dates": dates[window:],
        "sharpe": [_round(v) for v in sharpe.tolist()],
        "volatility": [_round(v) for v in volatility.tolist()],
    }


def _round(value: float) -> float | None:
    return round(value, 6) if math.isfinite(value) else None


def rolling_figure(roll: Mapping[str, Any]) -> dict[str, Any]:
    """Rolling Sharpe on top, rolling volatility (percent) below."""
    window = roll["window"]
    vol = [None if v is None else round(v * 100, 6) for v in roll["volatility"]]
    return {
        "data": [
            {
                "type": "scatter",
                "mode": "lines",
                "name": f"Sharpe ({window} sessions)",
                "x": roll["dates"],
                "y": roll["sharpe"],
                "line": {"color": "#1f77b4", "width": 1.4},
                "yaxis": "y",
            },
            {
                "type": "scatter",
                "mode": "lines",
                "name": f"volatility % ({window} sessions)",
                "x": roll["dates"],
                "y": vol,
                "line": {"color": "#ff7f0e", "width": 1.4},
                "yaxis": "y2",
            },
        ],
        "layout": {
            "height": 380,
            "margin": {"l": 60, "r": 20, "t": 30, "b": 40},
            "font": {"family": "system-ui, sans-serif", "size": 12},
            "hovermode": "x unified",
            "legend": {"orientation": "h", "y": 1.1},
            "yaxis": {"domain": [0.55, 1.0], "title": {"text": "Sharpe"}, "zeroline": True},
            "yaxis2": {"domain": [0.0, 0.42], "title": {"text": "volatility %"}},
            "xaxis": {"anchor": "y2"},
        },
    }


def benchmark_figures(data: Mapping[str, Any]) -> dict[str, float | None]:
    """The benchmark's total return, CAGR, Sharpe ratio and max drawdown.

    Total return is the result's ``benchmark_return`` (the benchmark ticker's, or the
    equal-weight universe's without one). The others need the benchmark's curve, which
    a result has with a benchmark ticker: computed from it as the engine computes the
    strategy's own, on the sessions where the benchmark has a close.
    """
    import numpy as np

    out: dict[str, float | None] = {}
    metrics = data.get("performance_metrics")
    if isinstance(metrics, Mapping):
        total = metrics.get("benchmark_return")
        if isinstance(total, int | float) and not isinstance(total, bool):
            out["total_return"] = float(total)
    bench = charts.benchmark_curve(data)
    if bench is None:
        return out
    dates, raw = bench
    values = _floats(raw)
    known = np.isfinite(values) & (values > 0)
    if known.sum() < 2 or len(dates) != len(values):
        return out
    parsed = [_day(d) for d in dates]
    if any(d is None for d in parsed):
        return out
    try:
        days = np.array(parsed, dtype="datetime64[D]")[known]
    except ValueError:  # a month's day that does not exist (2020-02-31)
        return out
    curve = values[known]
    daily = curve[1:] / curve[:-1] - 1.0
    spread = float(daily.std(ddof=1)) if len(daily) > 1 else 0.0
    out["sharpe_ratio"] = (
        _finite(float(daily.mean()) / spread * math.sqrt(TRADING_DAYS)) if spread > 1e-15 else None
    )
    peak = np.maximum.accumulate(curve)
    out["max_drawdown"] = _finite(float((curve / peak - 1.0).min()))
    years = float((days[-1] - days[0]).astype(int)) / 365.25
    out["cagr"] = _finite((curve[-1] / curve[0]) ** (1.0 / years) - 1.0) if years > 0 else None
    return out
