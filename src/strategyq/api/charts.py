"""Plotly figure specs (plain dicts) for a result: equity with drawdown, benchmark, trades.

The specs are built by hand rather than with ``plotly.graph_objects``: the
validation layer of the Python package costs tens of milliseconds per figure,
and the browser-side ``Plotly.newPlot`` only needs the JSON. The browser side is
plotly.js's cartesian bundle (served by the app, inlined in HTML reports): the
charts here are scatter, bar and heatmap traces, and the whole plotly.js would cost
every fresh page three times the bytes and about half again the CPU to load.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from strategyq.errors import StrategyqError

MAX_PRICE_TICKERS = 12
"""Price subplots in :meth:`strategyq.result.Result.plot` (one figure; the dashboard and the
HTML report have a ticker picker instead)."""

_FONT = {"family": "system-ui, sans-serif", "size": 12}


PLOTLY_TRACES = ("scatter", "bar", "heatmap")
"""The trace types the specs below use: each must be in the shipped bundle."""


def plotly_js_path() -> Path:
    """plotly.js's minified cartesian bundle (``plotly.js-cartesian-dist-min``, the
    version the plotly wheel bundles, MIT licence beside it), shipped in the package."""
    return Path(str(resources.files("strategyq.api") / "static" / "plotly-cartesian.min.js"))


def _layout(**extra: Any) -> dict[str, Any]:
    return {
        "margin": {"l": 60, "r": 20, "t": 30, "b": 40},
        "font": _FONT,
        "hovermode": "x unified",
        "showlegend": True,
        "legend": {"orientation": "h", "y": 1.08},
        **extra,
    }


def benchmark_curve(data: Mapping[str, Any]) -> tuple[list[Any], list[Any]] | None:
    """The benchmark's (dates, values) when the result has one.

    Accepted shapes: ``equity_curve.benchmark`` (values on the equity curve's
    dates) or ``benchmark_curve {dates, values}``.
    """
    curve = data.get("equity_curve") or {}
    values = curve.get("benchmark")
    if isinstance(values, list) and values:
        return list(curve.get("dates") or []), values
    other = data.get("benchmark_curve")
    if isinstance(other, Mapping) and other.get("values"):
        return list(other.get("dates") or []), list(other["values"])
    return None


def drawdown(values: Sequence[float | None]) -> list[float | None]:
    """Percent below the running peak at each point (0 at a new high).

    A missing value (None) leaves the peak as it was and gives None once there is a
    positive peak; every point before one gives 0. Plain floats rather than numpy, so
    that ``strategyq serve`` need not import numpy to start: the same IEEE double
    arithmetic, point by point.
    """
    out: list[float | None] = []
    peak = math.nan
    for v in values:
        x = math.nan if v is None else float(v)
        if math.isnan(peak) or x > peak:  # the running maximum, NaN skipped
            peak = x
        dd = (x / peak - 1.0) * 100.0 if peak > 0 else 0.0
        out.append(round(dd, 4) if math.isfinite(dd) else None)
    return out


def equity_overlay(runs: Sequence[tuple[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """Several backtests' equity curves on one chart, one line named by each run's id."""
    traces = []
    for name, data in runs:
        curve = data.get("equity_curve") or {}
        dates, values = list(curve.get("dates") or []), list(curve.get("values") or [])
        if dates and len(dates) == len(values):
            traces.append(
                {"type": "scatter", "mode": "lines", "name": name, "x": dates, "y": values}
            )
    return {"data": traces, "layout": _layout(height=420, yaxis={"title": "equity"})}


def equity_figure(data: Mapping[str, Any]) -> dict[str, Any] | None:
    """Equity (and benchmark) on top, drawdown below; None when there is no curve."""
    curve = data.get("equity_curve") or {}
    dates, values = list(curve.get("dates") or []), list(curve.get("values") or [])
    if not dates or len(dates) != len(values):
        return None
    traces: list[dict[str, Any]] = [
        {
            "type": "scatter",
            "mode": "lines",
            "name": "equity",
            "x": dates,
            "y": values,
            "line": {"color": "#1f77b4", "width": 1.6},
            "yaxis": "y",
        },
    ]
    bench = benchmark_curve(data)
    if bench is not None:
        traces.append(
            {
                "type": "scatter",
                "mode": "lines",
                "name": "benchmark",
                "x": bench[0],
                "y": bench[1],
                "line": {"color": "#7f7f7f", "width": 1.2, "dash": "dot"},
                "yaxis": "y",
            }
        )
    traces.append(
        {
            "type": "scatter",
            "mode": "lines",
            "name": "drawdown %",
            "x": dates,
            "y": drawdown(values),
            "fill": "tozeroy",
            "line": {"color": "#d62728", "width": 1},
            "yaxis": "y2",
        }
    )
    layout = _layout(
        height=460,
        yaxis={"domain": [0.34, 1.0], "title": {"text": "equity"}},
        yaxis2={"domain": [0.0, 0.26], "title": {"text": "drawdown %"}},
        xaxis={"anchor": "y2"},
    )
    return {"data": traces, "layout": layout}


def _trades_by_ticker(trades: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    out: dict[str, list[Mapping[str, Any]]] = {}
    for trade in trades:
        ticker = trade.get("ticker")
        if isinstance(ticker, str):
            out.setdefault(ticker, []).append(trade)
    return out


def _markers(trades: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    entries = [t for t in trades if t.get("entry_date")]
    exits = [t for t in trades if t.get("exit_date")]
    return [
        {
            "type": "scatter",
            "mode": "markers",
            "name": "entry",
            "x": [t["entry_date"] for t in entries],
            "y": [t.get("entry_price") for t in entries],
            "text": [t.get("direction", "long") for t in entries],
            "marker": {"symbol": "triangle-up", "size": 10, "color": "#2ca02c"},
        },
        {
            "type": "scatter",
            "mode": "markers",
            "name": "exit",
            "x": [t["exit_date"] for t in exits],
            "y": [t.get("exit_price") for t in exits],
            "text": [str(t.get("exit_reason", "")) for t in exits],
            "marker": {"symbol": "triangle-down", "size": 10, "color": "#d62728"},
        },
    ]


def traded_tickers(data: Mapping[str, Any]) -> dict[str, int]:
    """Every ticker with a trade in ``data``, sorted, with its number of trades."""
    by_ticker = _trades_by_ticker(data.get("trades") or [])
    return {ticker: len(by_ticker[ticker]) for ticker in sorted(by_ticker)}


def price_figures(
    data: Mapping[str, Any],
    market_dir: Path | None,
    *,
    adjusted: bool = True,
    tickers: Sequence[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Per ticker traded (``tickers`` of them, default all): closes with entries and exits.

    The closes come from the market store when this process can read it; without
    it the chart shows the trades' own prices only.
    """
    by_ticker = _trades_by_ticker(data.get("trades") or [])
    wanted = sorted(by_ticker) if tickers is None else [t for t in tickers if t in by_ticker]
    if not wanted:
        return {}
    chosen = {t: by_ticker[t] for t in wanted}
    closes = _closes(market_dir, wanted, chosen, adjusted)
    figures = {}
    for ticker in wanted:
        traces = []
        if ticker in closes:
            dates, values = closes[ticker]
            traces.append(
                {
                    "type": "scatter",
                    "mode": "lines",
                    "name": f"{ticker} close",
                    "x": dates,
                    "y": values,
                    "line": {"color": "#444", "width": 1.1},
                }
            )
        traces.extend(_markers(by_ticker[ticker]))
        figures[ticker] = {
            "data": traces,
            "layout": _layout(height=320, title={"text": ticker}, hovermode="closest"),
        }
    return figures


def _closes(
    market_dir: Path | None,
    tickers: list[str],
    by_ticker: Mapping[str, list[Mapping[str, Any]]],
    adjusted: bool,
) -> dict[str, tuple[list[str], list[float]]]:
    if market_dir is None or not (market_dir / "manifest.json").exists():
        return {}
    from strategyq.data import MarketData

    dates = [
        d
        for ts in by_ticker.values()
        for t in ts
        for d in (t.get("entry_date"), t.get("exit_date"))
        if isinstance(d, str) and d
    ]
    if not dates:
        return {}
    import numpy as np  # loaded with the market data below, which needs it anyway

    try:
        first, last = np.datetime64(min(dates)) - 30, np.datetime64(max(dates)) + 30
        frame = (
            MarketData(market_dir, cache_mb=64)
            .load(
                tickers,
                first.astype(object),
                last.astype(object),
                adjusted=adjusted,
                warmup_sessions=0,
                indicators=False,
            )
            .frame
        )
    except (StrategyqError, OSError, ValueError):
        return {}
    out: dict[str, tuple[list[str], list[float]]] = {}
    for ticker, rows in frame.groupby("ticker", sort=False, observed=True):
        out[str(ticker)] = (
            rows["date"].dt.strftime("%Y-%m-%d").tolist(),
            [round(float(v), 4) for v in rows["close"].tolist()],
        )
    return out
