"""``/``: the queue overview with its throughput chart."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from strategyq.api.deps import READ, Principal, State
from strategyq.api.pages.render import render, script_json

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
def overview(request: Request, state: State, _: Principal = READ) -> Response:
    stats = state.view.stats().as_dict()
    figure = _throughput_figure(stats["throughput"])
    return render(
        request,
        "overview.html",
        {
            "stats": stats,
            "throughput": script_json(figure),
            "refresh": request.query_params.get("refresh") != "0",
        },
    )


def _throughput_figure(buckets: list[dict[str, Any]]) -> dict[str, Any]:
    """The overview's Plotly figure: finished and failed tasks per time bucket."""
    return {
        "data": [
            {
                "type": "bar",
                "name": "finished",
                "x": [b["end_ms"] for b in buckets],
                "y": [b["finished"] for b in buckets],
                "marker": {"color": "#1f77b4"},
            },
            {
                "type": "bar",
                "name": "failed",
                "x": [b["end_ms"] for b in buckets],
                "y": [b["failed"] for b in buckets],
                "marker": {"color": "#d62728"},
            },
        ],
        "layout": {
            "height": 220,
            "barmode": "group",
            "margin": {"l": 40, "r": 10, "t": 10, "b": 30},
            "xaxis": {"type": "date"},
            "legend": {"orientation": "h"},
        },
    }
