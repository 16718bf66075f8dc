"""A stored result record in the shape the pages and the report expect, whatever was stored.

Results are written by workers, but ``task_result:{id}`` is also open to
producers (the seed's Go backend writes ``queued`` records itself), so a page
may meet any JSON: ``data`` as a list, metrics as a string, trades that are
numbers. Each field the templates read gets its documented type here; a value
of another type is dropped (rows) or left out, never passed on to fail deep in
a template or a chart.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MAPPINGS = ("performance_metrics", "summary", "equity_curve", "benchmark_curve", "best")
ROWS = ("trades", "instances", "ranked_results", "results", "folds")
NUMBERS = ("execution_time_ms", "attempt")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _mapping(value: Any) -> dict[str, Any]:
    # A decoded JSON object is a dict with string keys already: kept as it is (a
    # sweep's ten thousand rows are not copied); anything else becomes a dict or {}.
    if type(value) is dict:
        return value
    return {str(k): v for k, v in value.items()} if isinstance(value, Mapping) else {}


def clean_data(value: Any) -> dict[str, Any]:
    """``data`` of a record with its known fields of their documented types."""
    data = dict(_mapping(value))
    for name in MAPPINGS:
        if name in data:
            data[name] = _mapping(data[name])
    for name in ROWS:
        if name in data:
            rows = data[name]
            if not isinstance(rows, list):
                data[name] = []
            elif not all(type(r) is dict for r in rows):
                data[name] = [_mapping(r) for r in rows if isinstance(r, Mapping)]
    for name in NUMBERS:
        if name in data and not _number(data[name]):
            data[name] = None
    summary = data.get("summary")
    if isinstance(summary, dict) and "trade_model" in summary:
        summary["trade_model"] = _mapping(summary["trade_model"])
    curve = data.get("equity_curve")
    if isinstance(curve, dict):
        for name in ("dates", "values", "benchmark"):
            if name in curve and not isinstance(curve[name], list):
                curve[name] = []
    warnings = data.get("warnings")
    if warnings is not None and not isinstance(warnings, list):
        data["warnings"] = [str(warnings)]
    for name in ("error", "error_type", "stage", "worker_id"):
        if data.get(name) is not None and not isinstance(data[name], str):
            data[name] = str(data[name])
    return data


def clean_record(record: Any) -> dict[str, Any]:
    """A record (``status``, ``data``, ``updated_at``) safe for every template."""
    out = dict(_mapping(record))
    status = out.get("status")
    out["status"] = status if isinstance(status, str) else (None if status is None else str(status))
    out["data"] = clean_data(out.get("data"))
    updated = out.get("updated_at")
    if updated is not None and not isinstance(updated, str):
        out["updated_at"] = str(updated)
    return out
