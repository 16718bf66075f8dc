"""What a sweep's page and report show: progress, ranking, heatmap, the best backtest, folds.

Pure functions of the stored result (and the page's query string), shared by
the task page and the standalone HTML report. The heatmap can show any metric
over any two of the sweep's parameters (chosen in the page's form): each cell
is the best combination with those two values, as the stored heatmap is, and
carries that combination's index so a click opens its page.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from strategyq.api import charts
from strategyq.labels import HEADLINE, METRICS, format_metric, label
from strategyq.protocol.args import SWEEP, TASK_ARGS

TABLE_METRICS = ("total_return", "cagr", "sharpe_ratio", "max_drawdown", "win_rate", "num_trades")
LOWER_IS_BETTER = frozenset({"max_drawdown_duration_sessions", "volatility"})


def mapping(value: Any) -> Mapping[str, Any]:
    """``value`` when it is a mapping, else an empty one."""
    if type(value) is dict:  # the common case, without the ABC check's cost
        return value
    return value if isinstance(value, Mapping) else {}


def _number(value: Any) -> float | None:
    kind = type(value)
    if (kind is float or kind is int) and math.isfinite(value):
        return float(value)
    return None


def progress(data: Mapping[str, Any], started_ms: Any) -> dict[str, Any] | None:
    """``{"done", "total", "percent", "eta"}`` of a running sweep (None when unknown)."""
    raw = data.get("progress")
    if not isinstance(raw, Mapping):
        return None
    done, total = _number(raw.get("done")), _number(raw.get("total"))
    if done is None or not total:
        return None
    eta = None
    started = _started_s(started_ms)
    if started is not None and done > 0:
        spent = max(time.time() - started, 0.0)
        eta = spent / done * (total - done)
    return {
        "done": int(done),
        "total": int(total),
        "percent": round(100.0 * done / total, 1),
        "eta_s": eta,
    }


def _started_s(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        # Epoch milliseconds or seconds.
        return float(value) / 1000 if value > 1e11 else float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def result_rows(data: Mapping[str, Any], params: Sequence[str]) -> list[dict[str, Any]]:
    """The ranking as flat table rows: rank, each parameter, the main metrics, the index."""
    rows = []
    shown = [(label(name), name) for name in TABLE_METRICS]
    for row in data.get("results") or data.get("top") or []:
        if type(row) is not dict:
            continue
        values, metrics = mapping(row.get("params")), mapping(row.get("metrics"))
        flat: dict[str, Any] = {"rank": row.get("rank")}
        for name in params:
            flat[name] = values.get(name)
        for title, name in shown:
            flat[title] = metrics.get(name)
        flat["index"] = row.get("index")
        rows.append(flat)
    return rows


def _better(metric: str, a: float, b: float) -> bool:
    return a < b if metric in LOWER_IS_BETTER else a > b


def heatmap(data: Mapping[str, Any], metric: str, x: str, y: str) -> dict[str, Any] | None:
    """The best ``metric`` for each (``x``, ``y``) pair of values, with its combination index."""
    cells: dict[tuple[Any, Any], tuple[float, Any]] = {}
    for row in data.get("results") or []:
        if type(row) is not dict:
            continue
        params, metrics = mapping(row.get("params")), mapping(row.get("metrics"))
        if x not in params or y not in params:
            continue
        value = _number(metrics.get(metric))
        if value is None:
            continue
        key = (params[x], params[y])
        if key not in cells or _better(metric, value, cells[key][0]):
            cells[key] = (value, row.get("index"))
    if not cells:
        return None
    xs = sorted({k[0] for k in cells}, key=_order)
    ys = sorted({k[1] for k in cells}, key=_order)
    values = [[cells[(a, b)][0] if (a, b) in cells else None for a in xs] for b in ys]
    index = [[cells[(a, b)][1] if (a, b) in cells else None for a in xs] for b in ys]
    return {
        "metric": metric,
        "x": x,
        "y": y,
        "x_values": xs,
        "y_values": ys,
        "values": values,
        "index": index,
    }


def _order(value: Any) -> tuple[int, Any]:
    number = _number(value)
    return (0, number) if number is not None else (1, str(value))


def heatmap_figure(heat: Mapping[str, Any], link: str | None) -> dict[str, Any]:
    """A Plotly heatmap; each cell's ``customdata`` is the URL of its combination."""
    metric = str(heat["metric"])
    unit = METRICS[metric].unit if metric in METRICS else "ratio"
    scale = 100.0 if unit == "percent" else 1.0
    z = [[None if v is None else round(v * scale, 6) for v in row] for row in heat["values"]]
    text = [[format_metric(metric, v) for v in row] for row in heat["values"]]
    custom = [
        [None if i is None or link is None else f"{link}/{i}" for i in row] for row in heat["index"]
    ]
    return {
        "data": [
            {
                "type": "heatmap",
                "x": [str(v) for v in heat["x_values"]],
                "y": [str(v) for v in heat["y_values"]],
                "z": z,
                "text": text,
                "customdata": custom,
                "hovertemplate": f"{heat['x']}=%{{x}}<br>{heat['y']}=%{{y}}<br>"
                f"{label(metric)}: %{{text}}<extra></extra>",
                # Red (worst) through yellow to green (best); plotly.js has no RdYlGn.
                "colorscale": [[0.0, "#d73027"], [0.5, "#fee08b"], [1.0, "#1a9850"]],
                "reversescale": metric in LOWER_IS_BETTER,
                "colorbar": {"title": {"text": label(metric) + (" %" if scale != 1 else "")}},
                "xgap": 1,
                "ygap": 1,
            }
        ],
        "layout": {
            "height": 420,
            "margin": {"l": 60, "r": 20, "t": 20, "b": 50},
            "xaxis": {"title": {"text": str(heat["x"])}, "type": "category"},
            "yaxis": {"title": {"text": str(heat["y"])}, "type": "category"},
            "font": {"size": 12},
        },
    }


def oos_figure(walk: Mapping[str, Any]) -> dict[str, Any] | None:
    """The walk-forward's stitched out-of-sample equity curve, drawdown below."""
    curve = walk.get("oos_equity_curve")
    if not isinstance(curve, Mapping):
        return None
    return charts.equity_figure({"equity_curve": curve})


def fold_rows(walk: Mapping[str, Any], metric: str) -> list[dict[str, Any]]:
    rows = []
    for fold in walk.get("folds") or []:
        if not isinstance(fold, Mapping):
            continue
        params, ins = mapping(fold.get("params")), mapping(fold.get("in_sample"))
        oos = mapping(fold.get("out_of_sample"))
        rows.append(
            {
                "fold": fold.get("fold"),
                "train": f"{str(fold.get('train_start'))[:10]} → {str(fold.get('train_end'))[:10]}",
                "test": f"{str(fold.get('test_start'))[:10]} → {str(fold.get('test_end'))[:10]}",
                "params": ", ".join(f"{k}={v}" for k, v in params.items()),
                f"in-sample {label(metric)}": format_metric(metric, ins.get(metric)),
                f"out-of-sample {label(metric)}": format_metric(metric, oos.get(metric)),
                "out-of-sample return": format_metric("total_return", oos.get("total_return")),
                "out-of-sample trades": format_metric("num_trades", oos.get("num_trades")),
            }
        )
    return rows


def headline(metrics: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(label, value, definition) of the headline metrics present."""
    return [
        (label(n), format_metric(n, metrics.get(n)), METRICS[n].definition)
        for n in HEADLINE
        if n in metrics
    ]


def combination(data: Mapping[str, Any], index: int) -> dict[str, Any] | None:
    """The ranked row of the combination ``index`` (None when not in the stored results)."""
    for row in data.get("results") or []:
        if isinstance(row, Mapping) and row.get("index") == index:
            return dict(row)
    return None


SWEEP_ONLY_ARGS = frozenset(a.name for a in TASK_ARGS if a.task_types == SWEEP)
"""A sweep's own args (the grid, the ranking, walk-forward): not a backtest's."""


def combination_task_id(sweep_id: str, index: int) -> str:
    """The id of the backtest that runs one combination of a sweep in full.

    Fixed per (sweep, combination), so the backtest is run once and every later click
    on the same cell opens it.
    """
    return f"{sweep_id}.combination-{index}"


def combination_message(
    sweep_id: str, index: int, task_args: Mapping[str, Any], params: Mapping[str, Any]
) -> dict[str, Any]:
    """The backtest of one combination: the sweep's args without its own, with ``params``."""
    args = {k: v for k, v in task_args.items() if k not in SWEEP_ONLY_ARGS}
    args["params"] = dict(params)
    return {
        "task_id": combination_task_id(sweep_id, index),
        "task_type": "backtest",
        "args": args,
    }
