"""Fan-in: a sweep's result, assembled from its chunks' results (pure; no engine run).

Done by the worker whose chunk completed the sweep. Rows come back in grid
order and are ranked with the tie rule of :mod:`strategyq.sweep.rank`; the
best combination's full backtest was computed by its chunk. A walk-forward's
out-of-sample curve is the test windows' equity curves chained end to end,
each fold starting from the equity the previous one ended with.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Mapping, Sequence
from datetime import date
from typing import Any

from strategyq.sweep.rank import best, heatmap, ranked

TRADING_DAYS = 252


def assemble(
    plan: Mapping[str, Any], chunks: Mapping[int, Mapping[str, Any]], max_results: int
) -> dict[str, Any]:
    """The ``data`` of a completed sweep."""
    ordered = [chunks[i] for i in sorted(chunks)]
    metric = str(plan["maximize"])
    top_n = int(plan["top_n"])
    out: dict[str, Any] = {
        "success": True,
        "execution_mode": "sweep",
        "maximize": metric,
        "params": list(plan["names"]),
        "constraint": plan.get("constraint"),
        "total_combinations": int(plan["total"]),
        "expanded_combinations": int(plan["expanded"]),
        "chunks": len(ordered),
        "date_range": plan["date_range"],
        "symbols": plan["symbols"],
    }
    if plan.get("folds") is None:
        rows = [r for c in ordered for r in c["rows"]]
        order = ranked(rows, metric)
        winner = best(
            [c["best"] | {"metrics": c["best"]["result"]["performance_metrics"]} for c in ordered],
            metric,
        )
        out.update(
            best={
                "index": winner["index"],
                "params": winner["params"],
                "metrics": winner["metrics"],
            },
            best_result=winner["result"],
            top=[_row(r, rank) for rank, r in enumerate(order[:top_n], 1)],
            results=[_row(r, rank) for rank, r in enumerate(order[:max_results], 1)],
            results_returned=min(len(order), max_results),
            results_truncated=len(order) > max_results,
        )
        pair = plan.get("heatmap")
        if pair:
            x, y = pair
            out["heatmap"] = heatmap(rows, metric, x, y, plan["axes"][x], plan["axes"][y])
        return out
    out["walk_forward"] = _walk_forward(plan, ordered, metric, top_n)
    return out


def _row(row: Mapping[str, Any], rank: int) -> dict[str, Any]:
    return {"rank": rank, "index": row["index"], "params": row["params"], "metrics": row["metrics"]}


def _walk_forward(
    plan: Mapping[str, Any], chunks: Sequence[Mapping[str, Any]], metric: str, top_n: int
) -> dict[str, Any]:
    folds_out = []
    dates: list[str] = []
    values: list[float] = []
    trades = wins = 0
    equity = None
    for k, fold in enumerate(plan["folds"]):
        parts = [c["folds"][k] for c in chunks]
        rows = [r for p in parts for r in p["rows"]]
        candidates = [p["best"] | {"metrics": p["best"]["train"]} for p in parts]
        winner = best(candidates, metric)
        test = winner["test"]
        curve = winner["test_curve"]
        initial = float(winner["initial_capital"])
        equity = initial if equity is None else equity
        scale = equity / initial
        dates.extend(curve["dates"])
        values.extend(v * scale for v in curve["values"])
        if curve["values"]:
            equity = curve["values"][-1] * scale
        n = int(test.get("num_trades") or 0)
        trades += n
        wins += round((test.get("win_rate") or 0.0) * n)
        folds_out.append(
            {
                **fold,
                "params": winner["params"],
                "index": winner["index"],
                "in_sample": winner["train"],
                "out_of_sample": test,
                "top_in_sample": [
                    _row(r, i) for i, r in enumerate(ranked(rows, metric)[:top_n], 1)
                ],
            }
        )
    initial = float(chunks[0]["folds"][0]["best"]["initial_capital"])
    spec = plan["walk_forward"]
    return {
        **spec,
        "sessions": plan.get("sessions"),
        "sessions_left_out": plan.get("sessions_left_out"),
        "folds": folds_out,
        "oos_equity_curve": {"dates": dates, "values": [round(v, 6) for v in values]},
        "oos_metrics": curve_metrics(dates, values, initial, trades, wins),
    }


def curve_metrics(
    dates: Sequence[str], values: Sequence[float], initial: float, trades: int, wins: int
) -> dict[str, Any]:
    """Metrics of the stitched out-of-sample curve, with the engine's definitions
    (docs/engine.md): daily returns of the curve, Sharpe and Sortino annualised
    with 252 sessions, CAGR over calendar days, drawdown from the running peak.

    Plain Python (the worker that assembles a sweep imports no numpy)."""
    curve = [float(initial), *(float(v) for v in values)]
    final = curve[-1]
    daily = (
        [b / a - 1.0 for a, b in itertools.pairwise(curve)]
        if all(v > 0 for v in curve[:-1])
        else []
    )
    peak, drawdown = curve[0], 0.0
    for v in curve:
        peak = max(peak, v)
        if peak > 0:
            drawdown = min(drawdown, v / peak - 1.0)
    cagr = None
    if len(dates) >= 2 and final > 0:
        days = (date.fromisoformat(dates[-1][:10]) - date.fromisoformat(dates[0][:10])).days
        if days > 0:
            cagr = _num((final / initial) ** (365.25 / days) - 1.0)
    sharpe = sortino = None
    if len(daily) >= 2:
        mean = math.fsum(daily) / len(daily)
        spread = statistics.stdev(daily)
        if spread > 1e-15:
            sharpe = _num(mean / spread * math.sqrt(TRADING_DAYS))
        downside = math.sqrt(math.fsum(min(d, 0.0) ** 2 for d in daily) / len(daily))
        if downside > 1e-15:
            sortino = _num(mean / downside * math.sqrt(TRADING_DAYS))
    return {
        "total_return": _num(final / initial - 1.0),
        "cagr": cagr,
        "max_drawdown": _num(drawdown),
        "sharpe_ratio": sharpe,
        "sortino_ratio": sortino,
        "num_trades": trades,
        "win_rate": _num(wins / trades) if trades else None,
    }


def _num(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None
