"""The dashboard and HTML reports ship plotly.js's cartesian bundle, so every trace type a
figure spec names must be one that bundle registers (a missing one draws nothing and
logs no error a user would see)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import plotly.graph_objects as go
from plotly.basedatatypes import BaseTraceType

from strategyq.api import charts

API = Path(charts.__file__).resolve().parent
REGISTERED = re.compile(r'moduleType:"trace",name:"([a-z0-9]+)"')


def _trace_names() -> set[str]:
    """Every trace type plotly knows (``scatter``, ``candlestick``, …)."""
    classes = [getattr(go, name) for name in dir(go)]  # loaded on first access
    return {
        cls.__name__.lower()
        for cls in classes
        if isinstance(cls, type) and issubclass(cls, BaseTraceType)
    }


def _types_named_in_specs() -> dict[str, set[str]]:
    """``{"type": "<trace>"}`` in any dict literal of the API's modules, by module."""
    traces = _trace_names()
    found: dict[str, set[str]] = {}
    for path in sorted(API.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Dict):
                continue
            for key, value in zip(node.keys, node.values, strict=True):
                if (
                    isinstance(key, ast.Constant)
                    and key.value == "type"
                    and isinstance(value, ast.Constant)
                    and value.value in traces
                ):
                    found.setdefault(str(value.value), set()).add(path.name)
    return found


def test_every_trace_type_the_figures_use_is_in_the_shipped_bundle() -> None:
    bundle = charts.plotly_js_path().read_text()
    registered = set(REGISTERED.findall(bundle))
    used = _types_named_in_specs()
    # The scan finds the figures (so an empty scan cannot pass for a clean one).
    assert set(charts.PLOTLY_TRACES) == set(used), used
    missing = {name: where for name, where in used.items() if name not in registered}
    assert not missing, f"trace types the bundle lacks: {missing}"


def test_the_bundle_ships_with_its_licence() -> None:
    licence = charts.plotly_js_path().with_name("plotly-cartesian.LICENSE").read_text()
    assert licence.startswith("MIT License") and "Plotly" in licence
