"""``/v1/queue`` and ``/v1/workers``: the queue's statistics and its registered workers."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from strategyq.api.deps import READ, Principal, State
from strategyq.api.models import QueueStats, WorkerOut
from strategyq.api.routes import RouteTable

router = RouteTable(prefix="/v1", tags=["queue"])


@router.get("/queue", response_model=QueueStats, summary="Queue statistics")
def queue(state: State, _: Principal = READ) -> dict[str, Any]:
    stats = state.view.stats(newest_dead_letters=0).as_dict()
    stats.pop("newest_dead_letters", None)
    return stats


@router.get("/workers", response_model=list[WorkerOut], summary="Registered workers")
def workers(state: State, _: Principal = READ) -> list[dict[str, Any]]:
    return [asdict(w) for w in state.view.workers()]
