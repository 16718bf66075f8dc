"""How ``strategyq submit sweep --wait`` and ``strategyq result`` show a sweep."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

# Metrics shown beside the maximised one in the top-N table.
_COLUMNS = ("total_return", "sharpe_ratio", "max_drawdown", "num_trades", "win_rate")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return "—" if value is None else str(value)


def render_sweep(console: Console, data: dict[str, Any]) -> None:
    """The top-N table, the heatmap as a text table, and the walk-forward folds."""
    metric = data.get("maximize", "")
    console.print(
        f"{data.get('total_combinations')} combinations of {', '.join(data.get('params', []))} "
        f"({data.get('expanded_combinations')} before the constraint) in "
        f"{data.get('chunks')} chunks, ranked by {metric}"
    )
    walk = data.get("walk_forward")
    if walk:
        _render_walk_forward(console, walk, metric)
        return
    columns = [metric, *(c for c in _COLUMNS if c != metric)]
    table = Table(title=f"top {len(data.get('top') or [])}")
    table.add_column("rank", justify="right")
    names = data.get("params") or []
    for name in names:
        table.add_column(name, justify="right")
    for c in columns:
        table.add_column(c, justify="right")
    for row in data.get("top") or []:
        table.add_row(
            str(row["rank"]),
            *(_fmt(row["params"].get(n)) for n in names),
            *(_fmt(row["metrics"].get(c)) for c in columns),
        )
    console.print(table)
    heat = data.get("heatmap")
    if heat:
        grid = Table(title=f"{heat['metric']}: {heat['y']} (rows) × {heat['x']} (columns)")
        grid.add_column(f"{heat['y']} \\ {heat['x']}", justify="right")
        for x in heat["x_values"]:
            grid.add_column(_fmt(x), justify="right")
        for y, row in zip(heat["y_values"], heat["values"], strict=True):
            grid.add_row(_fmt(y), *(_fmt(v) for v in row))
        console.print(grid)


def _render_walk_forward(console: Console, walk: dict[str, Any], metric: str) -> None:
    table = Table(title="walk-forward folds")
    for c in (
        "fold",
        "train",
        "test",
        "params",
        f"in-sample {metric}",
        f"out-of-sample {metric}",
        "out-of-sample return",
    ):
        table.add_column(c)
    for fold in walk.get("folds") or []:
        table.add_row(
            str(fold["fold"]),
            f"{fold['train_start']}..{fold['train_end']}",
            f"{fold['test_start']}..{fold['test_end']}",
            ", ".join(f"{k}={v}" for k, v in fold["params"].items()),
            _fmt(fold["in_sample"].get(metric)),
            _fmt(fold["out_of_sample"].get(metric)),
            _fmt(fold["out_of_sample"].get("total_return")),
        )
    console.print(table)
    oos = walk.get("oos_metrics") or {}
    console.print("stitched out-of-sample: " + ", ".join(f"{k} {_fmt(v)}" for k, v in oos.items()))
