"""``/``: the queue overview with its throughput chart."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse

from strategyq.api import events
from strategyq.api.deps import READ, Principal, State
from strategyq.api.followers import HeldStream
from strategyq.api.pages.render import render, script_json
from strategyq.api.routes import RouteTable

router = RouteTable(include_in_schema=False)


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


@router.get("/overview/events")
async def overview_events(request: Request, state: State, _: Principal = READ) -> StreamingResponse:
    """The queue-wide event stream the overview follows (Server-Sent Events).

    A ``ready`` event at once, then ``changes`` events listing the tasks whose record
    changed (each task's latest), and ``timeout`` at the stream's time limit. It holds
    one of the process's follower places, like a task's stream (503 past the bound).
    Not in the OpenAPI document: it is the page's, and it never ends on its own.
    """
    ticket = state.followers.take()
    return HeldStream(
        events.queue_stream(state, request),
        ticket,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
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
