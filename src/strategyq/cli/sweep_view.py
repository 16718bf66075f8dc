"""How ``strategyq submit sweep --wait`` and ``strategyq result`` show a sweep.

The heatmap is coloured by value (red low, green high, the same scale for every
cell). It is a table of numbers when its columns fit the terminal, a grid of
coloured blocks (one per combination, the axes' values at the edges) when only
the blocks fit, and otherwise the top of the ranking with a pointer to the
dashboard and the HTML report, which draw any size.
"""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from strategyq.labels import format_metric, label

# Metrics shown beside the maximised one in the top-N table.
_COLUMNS = ("total_return", "sharpe_ratio", "max_drawdown", "num_trades", "win_rate")
CELL_WIDTH = 9
"""Characters per cell of the numeric heatmap (the longest formatted value and padding)."""
LABEL_WIDTH = 12


def _param(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return "—" if value is None else str(value)


def _colour(value: Any, low: float, high: float) -> str:
    """A red (low) to green (high) background for ``value`` on the grid's own scale."""
    if not isinstance(value, int | float) or not math.isfinite(value):
        return "on grey23"
    share = 0.5 if high <= low else (value - low) / (high - low)
    red = int(200 * (1 - share) + 30 * share)
    green = int(60 * (1 - share) + 170 * share)
    return f"black on rgb({red},{green},70)"


def _finite(rows: list[list[Any]]) -> list[float]:
    return [
        v
        for row in rows
        for v in row
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
    ]


def render_sweep(console: Console, data: dict[str, Any], task_id: str | None = None) -> None:
    """The top-N table, the coloured heatmap (or a pointer) and the walk-forward folds."""
    metric = str(data.get("maximize", ""))
    params = [str(p) for p in data.get("params") or []]
    console.print(
        f"{data.get('total_combinations')} combinations of {', '.join(params)} "
        f"({data.get('expanded_combinations')} before the constraint) in "
        f"{data.get('chunks')} chunks, ranked by {label(metric)}"
    )
    walk = data.get("walk_forward")
    if walk:
        _render_walk_forward(console, walk, metric)
        return
    _render_top(console, data, metric, params)
    heat = data.get("heatmap")
    if isinstance(heat, dict) and heat.get("values"):
        render_heatmap(console, heat, task_id)


def _render_top(console: Console, data: dict[str, Any], metric: str, params: list[str]) -> None:
    columns = [metric, *(c for c in _COLUMNS if c != metric)]
    top = data.get("top") or []
    table = Table(title=f"best {len(top)} combinations")
    table.add_column("rank", justify="right")
    for name in params:
        table.add_column(name, justify="right")
    for c in columns:
        table.add_column(label(c), justify="right")
    for row in top:
        table.add_row(
            str(row.get("rank")),
            *(_param((row.get("params") or {}).get(n)) for n in params),
            *(format_metric(c, (row.get("metrics") or {}).get(c)) for c in columns),
        )
    console.print(table)


def render_heatmap(console: Console, heat: dict[str, Any], task_id: str | None = None) -> None:
    """The heatmap in the form that fits ``console``'s width (see the module's docstring)."""
    metric = str(heat.get("metric", ""))
    xs, ys = list(heat.get("x_values") or []), list(heat.get("y_values") or [])
    values = [list(row) for row in heat.get("values") or []]
    finite = _finite(values)
    low, high = (min(finite), max(finite)) if finite else (0.0, 0.0)
    title = f"{label(metric)}: {heat.get('y')} (rows) × {heat.get('x')} (columns)"
    legend = (
        f"colour scale: red {format_metric(metric, low)} → green {format_metric(metric, high)}; "
        "grey: no combination"
    )
    width = console.width
    if LABEL_WIDTH + len(xs) * (CELL_WIDTH + 1) <= width:
        grid = Table(title=title, caption=legend, padding=(0, 0))
        grid.add_column(f"{heat.get('y')} \\ {heat.get('x')}", justify="right")
        for x in xs:
            grid.add_column(_param(x), justify="right", width=CELL_WIDTH)
        for y, row in zip(ys, values, strict=False):
            grid.add_row(
                _param(y),
                *(
                    Text(format_metric(metric, v).replace(" %", "%"), style=_colour(v, low, high))
                    for v in row
                ),
            )
        console.print(grid)
        return
    if LABEL_WIDTH + 2 * len(xs) <= width:
        console.print(Text(title, style="italic"))
        for y, row in zip(ys, values, strict=False):
            line = Text(f"{_param(y):>{LABEL_WIDTH - 1}} ")
            for v in row:
                line.append("  ", style=_colour(v, low, high))
            console.print(line)
        axis = f"{heat.get('x')}: {_param(xs[0])} … {_param(xs[-1])} ({len(xs)} values)"
        console.print(" " * LABEL_WIDTH + axis, highlight=False)
        console.print(legend, highlight=False)
        return
    where = f"/tasks/{task_id}" if task_id else "the task's page"
    console.print(
        f"the {len(ys)} × {len(xs)} heatmap is wider than this terminal: open it on the "
        f"dashboard ({where}) or write the report with "
        f"`strategyq result {task_id or 'ID'} --html report.html`"
    )


def _render_walk_forward(console: Console, walk: dict[str, Any], metric: str) -> None:
    table = Table(title="walk-forward folds")
    for c in (
        "fold",
        "train",
        "test",
        "params",
        f"in-sample {label(metric)}",
        f"out-of-sample {label(metric)}",
        "out-of-sample return",
    ):
        table.add_column(c)
    for fold in walk.get("folds") or []:
        table.add_row(
            str(fold["fold"]),
            f"{str(fold['train_start'])[:10]} → {str(fold['train_end'])[:10]}",
            f"{str(fold['test_start'])[:10]} → {str(fold['test_end'])[:10]}",
            ", ".join(f"{k}={_param(v)}" for k, v in fold["params"].items()),
            format_metric(metric, fold["in_sample"].get(metric)),
            format_metric(metric, fold["out_of_sample"].get(metric)),
            format_metric("total_return", fold["out_of_sample"].get("total_return")),
        )
    console.print(table)
    oos = walk.get("oos_metrics") or {}
    console.print(
        "stitched out-of-sample: "
        + ", ".join(f"{label(k)} {format_metric(k, v)}" for k, v in oos.items())
    )
