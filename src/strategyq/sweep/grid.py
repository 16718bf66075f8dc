"""A sweep's parameter grid: validation, expansion, the constraint, the size cap.

``param_grid`` is either a mapping of parameter name to a list of values
(``{"fast": [5, 10, 20], "slow": [50, 100]}``: every combination, the first
parameter varying slowest, as ``itertools.product`` does) or a list of
explicit combinations (``[{"fast": 5, "slow": 50}, ...]``). The position of a
combination in that order is its ``index``: the tie rule of the ranking and
the chunking both use it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from strategyq.errors import TaskValidationError
from strategyq.sweep.constraint import parse_constraint

Scalar = int | float | str | bool
MAX_NAME_CHARS = 64
MAX_PARAMS = 16


@dataclass(frozen=True)
class Grid:
    """The combinations a sweep runs, in grid order, after the constraint."""

    names: tuple[str, ...]
    combinations: tuple[dict[str, Scalar], ...]
    axes: Mapping[str, tuple[Scalar, ...]]
    """The distinct values of each parameter, in first-seen order (for the heatmap)."""
    expanded: int
    """Combinations before the constraint filtered them."""

    def __len__(self) -> int:
        return len(self.combinations)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not name.isidentifier() or len(name) > MAX_NAME_CHARS:
        raise TaskValidationError(
            f"args.param_grid: parameter names must be identifiers such as 'fast', got "
            f"{_show(name)}"
        )
    if name.startswith("_"):
        raise TaskValidationError(
            f"args.param_grid: parameter name {name!r} may not start with an underscore"
        )
    return name


def _check_value(name: str, value: Any) -> Scalar:
    if isinstance(value, bool | int | str):
        if isinstance(value, str) and len(value) > 200:
            raise TaskValidationError(f"args.param_grid: a value of {name!r} is too long")
        return value
    if isinstance(value, float) and math.isfinite(value):
        return value
    raise TaskValidationError(
        f"args.param_grid: values of {name!r} must be numbers, strings or booleans, got "
        f"{_show(value)}"
    )


_Expansion = tuple[tuple[str, ...], list[dict[str, Scalar]], dict[str, tuple[Scalar, ...]], int]
"""A grid's names, combinations, distinct values per name, and combination count."""


def expand(param_grid: Any, constraint: Any = None, *, max_combinations: int = 10_000) -> Grid:
    """Validate and expand ``param_grid``, filter it with ``constraint``, and cap its size.

    Raises:
        TaskValidationError: the grid is malformed, the constraint is not
            allowed, or the grid has more than ``max_combinations`` combinations
            (the message says how many and which setting raises the cap).
    """
    if isinstance(param_grid, Mapping) and len(param_grid) > MAX_PARAMS:
        # Before any name or value is checked: the work that follows grows with them.
        raise TaskValidationError(
            f"args.param_grid has {len(param_grid)} parameters; the limit is {MAX_PARAMS}"
        )
    if isinstance(param_grid, Mapping):
        names, combos, axes, expanded = _expand_axes(param_grid, max_combinations)
    elif isinstance(param_grid, list):
        names, combos, axes, expanded = _expand_list(param_grid, max_combinations)
    else:
        raise TaskValidationError(
            "args.param_grid must be an object of value lists "
            '({"fast": [5, 10], "slow": [50, 100]}) or a list of combinations, got '
            f"{_show(param_grid)}"
        )
    if len(names) > MAX_PARAMS:
        raise TaskValidationError(
            f"args.param_grid has {len(names)} parameters; the limit is {MAX_PARAMS}"
        )
    if constraint is not None:
        rule = parse_constraint(constraint, names)
        combos = [c for c in combos if rule.allows(c)]
        if not combos:
            raise TaskValidationError(
                f"args.constraint {constraint!r} excludes every combination of the grid; "
                "loosen it or widen the grid"
            )
    return Grid(names=names, combinations=tuple(combos), axes=axes, expanded=expanded)


def _expand_axes(param_grid: Mapping[Any, Any], max_combinations: int) -> _Expansion:
    """Every combination of a mapping of parameter name to its list of values."""
    names = tuple(_check_name(n) for n in param_grid)
    if not names:
        raise TaskValidationError(
            "args.param_grid is empty; give each parameter a list of values, e.g. "
            '{"fast": [5, 10, 20], "slow": [50, 100]}'
        )
    axes: dict[str, tuple[Scalar, ...]] = {}
    for name in names:
        values = param_grid[name]
        if not isinstance(values, list) or not values:
            raise TaskValidationError(
                f"args.param_grid[{name!r}] must be a non-empty list of values, got {_show(values)}"
            )
        checked = tuple(_check_value(name, v) for v in values)
        unique = tuple(dict.fromkeys((type(v), v) for v in checked))
        if len(unique) != len(checked):
            raise TaskValidationError(f"args.param_grid[{name!r}] lists a value twice")
        axes[name] = checked
    expanded = math.prod(len(v) for v in axes.values())
    _cap(expanded, max_combinations, "expands to")
    combos = [
        dict(zip(names, values, strict=True))
        for values in itertools.product(*(axes[n] for n in names))
    ]
    return names, combos, axes, expanded


def _expand_list(param_grid: list[Any], max_combinations: int) -> _Expansion:
    """A list of explicit combinations, each setting the same parameters."""
    if not param_grid:
        raise TaskValidationError("args.param_grid is an empty list of combinations")
    _cap(len(param_grid), max_combinations, "lists")
    first = param_grid[0]
    if not isinstance(first, Mapping) or not first:
        raise TaskValidationError(
            "args.param_grid as a list must hold combinations like "
            f'{{"fast": 5, "slow": 50}}, got {_show(first)} at [0]'
        )
    names = tuple(_check_name(n) for n in first)
    combos = []
    for i, combo in enumerate(param_grid):
        if not isinstance(combo, Mapping) or set(combo) != set(names):
            raise TaskValidationError(
                f"args.param_grid[{i}] must set exactly the parameters "
                f"{', '.join(names)}, got {_show(combo)}"
            )
        combos.append({n: _check_value(n, combo[n]) for n in names})
    axes = {n: tuple(dict.fromkeys(c[n] for c in combos)) for n in names}
    return names, combos, axes, len(combos)


def _cap(count: int, max_combinations: int, verb: str) -> None:
    if count > max_combinations:
        raise TaskValidationError(
            f"args.param_grid {verb} {count} combinations; the limit is {max_combinations} "
            "(STRATEGYQ_SWEEP_MAX_COMBINATIONS): use fewer values per parameter, split the "
            "sweep, or ask the operator to raise the limit"
        )
