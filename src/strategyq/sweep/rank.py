"""Ranking a sweep's combinations, and its heatmap.

The tie rule: combinations are ordered by the maximised metric, highest
first; a combination whose metric is undefined (``null``, e.g. a Sharpe ratio
with no trades) ranks below every defined value; among equal values the one
that comes first in grid order (the lowest ``index``) ranks higher. So the
best is the first combination, in grid order, that reaches the maximum.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any


def sort_key(row: Mapping[str, Any], metric: str) -> tuple[int, float, int]:
    """Key that sorts rows best first (``sorted(rows, key=...)``)."""
    value = row["metrics"].get(metric)
    defined = (
        isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    )
    return (0 if defined else 1, -float(value) if defined else 0.0, int(row["index"]))


def ranked(rows: Sequence[Mapping[str, Any]], metric: str) -> list[Mapping[str, Any]]:
    """The rows, best first, under the tie rule."""
    return sorted(rows, key=lambda r: sort_key(r, metric))


def best(rows: Sequence[Mapping[str, Any]], metric: str) -> Mapping[str, Any]:
    """The argmax row under the tie rule."""
    return min(rows, key=lambda r: sort_key(r, metric))


def heatmap(
    rows: Sequence[Mapping[str, Any]],
    metric: str,
    x: str,
    y: str,
    x_values: Sequence[Any],
    y_values: Sequence[Any],
) -> dict[str, Any]:
    """A ``len(y_values) × len(x_values)`` matrix of ``metric`` over two parameters.

    With more than two parameters a cell holds the best value over the other
    parameters (as backtesting.py's heatmap does); a cell no combination
    reached (the constraint excluded it) is ``null``.
    """
    col = {v: i for i, v in enumerate(x_values)}
    row_of = {v: i for i, v in enumerate(y_values)}
    cells: list[list[float | None]] = [[None] * len(x_values) for _ in y_values]
    for r in rows:
        value = r["metrics"].get(metric)
        if not isinstance(value, int | float) or isinstance(value, bool):
            continue
        i, j = row_of[r["params"][y]], col[r["params"][x]]
        current = cells[i][j]
        if current is None or value > current:
            cells[i][j] = float(value)
    return {
        "metric": metric,
        "x": x,
        "y": y,
        "x_values": list(x_values),
        "y_values": list(y_values),
        "values": cells,
    }
