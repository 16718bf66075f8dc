"""The strategy history page: a strategy's versions, the source diff between consecutive
versions, and their metrics over time, from the run archive.

A strategy is the runs sharing a ``name`` task arg; a version is one source
fingerprint among them. ``/history?fingerprint=…`` finds the name the version was
run under (or, with none, shows that one version's runs).
"""

from __future__ import annotations

import difflib
from typing import Annotated, Any

from fastapi import Query, Request
from fastapi.responses import Response

from strategyq.api.archive import answer
from strategyq.api.deps import READ, Principal, State
from strategyq.api.pages.render import render, script_json
from strategyq.api.problems import Problem
from strategyq.api.routes import RouteTable

PLOTTED = ("sharpe_ratio", "total_return", "max_drawdown")


def versions(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The distinct sources in the order they were first run, each with its runs and the
    diff from the version before."""
    out: list[dict[str, Any]] = []
    by_print: dict[str, dict[str, Any]] = {}
    for run in runs:
        key = run["fingerprint"] or "(no source)"
        version = by_print.get(key)
        if version is None:
            before = out[-1]["code"] if out else None
            code = run.get("strategy_code") or ""
            version = {
                "number": len(out) + 1,
                "fingerprint": key,
                "code": code,
                "runs": [],
                "diff": _diff(before, code, len(out), len(out) + 1) if before is not None else [],
            }
            by_print[key] = version
            out.append(version)
        version["runs"].append(run)
        run["version"] = version["number"]
    return out


def _diff(before: str, after: str, old: int, new: int) -> list[tuple[str, str]]:
    """(css class, line) of the unified diff from version ``old`` to ``new``."""
    lines = difflib.unified_diff(
        before.splitlines(), after.splitlines(), f"version {old}", f"version {new}", lineterm=""
    )
    classes = {"+": "add", "-": "del", "@": "hunk"}
    return [(classes.get(line[:1], "same"), line) for line in lines]


def metrics_figure(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each plotted metric over time, one marker per run, labelled with its version."""
    data = [
        {
            "type": "scatter",
            "mode": "lines+markers",
            "name": metric,
            "x": [r["finished_at"] for r in runs],
            "y": [r["metrics"][metric] for r in runs],
            "text": [f"version {r['version']}" for r in runs],
        }
        for metric in PLOTTED
    ]
    layout = {"margin": {"l": 60, "r": 20, "t": 30, "b": 40}, "hovermode": "x unified"}
    return {"data": data, "layout": layout}


router = RouteTable(include_in_schema=False)


@router.get("/history")
def history_page(
    request: Request,
    state: State,
    name: Annotated[str | None, Query(max_length=200)] = None,
    fingerprint: Annotated[str | None, Query(max_length=64)] = None,
    _: Principal = READ,
) -> Response:
    if not name and not fingerprint:
        raise Problem(422, "name a strategy: /history?name=… or /history?fingerprint=…")
    found = state.archive.get()
    label = name or answer(found.names_of, fingerprint) or None
    runs = answer(found.history, fingerprint, label)
    if not runs:
        raise Problem(404, f"no archived run of {label or fingerprint!r}")
    listed = versions(runs)
    return render(
        request,
        "history.html",
        {
            "title": label or f"fingerprint {fingerprint}",
            "versions": listed,
            "runs": list(reversed(runs)),
            "figure": script_json(metrics_figure(runs)),
        },
    )
