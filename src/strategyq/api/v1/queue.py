"""``/v1/queue`` and ``/v1/workers``: the queue's statistics and its registered workers."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from strategyq.api import events
from strategyq.api.deps import READ, Principal, State
from strategyq.api.followers import HeldStream
from strategyq.api.models import QueueStats, WorkerOut

router = APIRouter(prefix="/v1", tags=["queue"])


@router.get("/queue", response_model=QueueStats, summary="Queue statistics")
def queue(state: State, _: Principal = READ) -> dict[str, Any]:
    stats = state.view.stats(newest_dead_letters=0).as_dict()
    stats.pop("newest_dead_letters", None)
    return stats


@router.get("/workers", response_model=list[WorkerOut], summary="Registered workers")
def workers(state: State, _: Principal = READ) -> list[dict[str, Any]]:
    return [asdict(w) for w in state.view.workers()]


@router.get(
    "/queue/events",
    summary="Follow every task's status changes (Server-Sent Events)",
    description="A `ready` event at once, then `changes` events, each listing the tasks whose "
    "record changed (`task_id`, `status`, `stage`, `updated_at`, …; each task's latest) since "
    "the last; `timeout` when the stream's time limit is reached (reconnect to go on). "
    "Counts against STRATEGYQ_API_MAX_FOLLOWERS like a task's stream.",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
            "description": "An event stream.",
        }
    },
)
async def follow_queue(request: Request, state: State, _: Principal = READ) -> StreamingResponse:
    ticket = state.followers.take()
    return HeldStream(
        events.queue_stream(state, request),
        ticket,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
