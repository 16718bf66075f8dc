"""``/v1/runs``: the run archive (every run kept past Redis' result TTL), searched and read.

The same :class:`~strategyq.archive.store.RunFilter` answers ``strategyq runs``
and :func:`strategyq.archive.runs`, so the three agree on every filter.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path, Query

from strategyq.api.archive import answer
from strategyq.api.deps import READ, Principal, State
from strategyq.api.routes import RouteTable

RunId = Annotated[str, Path(min_length=1, max_length=200, description="The run's task id.")]

router = RouteTable(prefix="/v1", tags=["runs"])


@router.get("/runs", summary="Search archived runs")
def runs(
    state: State,
    name: Annotated[str | None, Query(max_length=200)] = None,
    tag: Annotated[list[str] | None, Query(description="Repeat: all must match.")] = None,
    fingerprint: Annotated[str | None, Query(max_length=64)] = None,
    symbol: Annotated[str | None, Query(max_length=40)] = None,
    since: Annotated[str | None, Query(description="Ended on or after (ISO).")] = None,
    until: Annotated[str | None, Query(description="Ended on or before (ISO).")] = None,
    status: Annotated[str | None, Query(max_length=20)] = None,
    task_type: Annotated[str | None, Query(max_length=20)] = None,
    metric: Annotated[
        list[str] | None, Query(description="e.g. sharpe_ratio>1 (repeat: all must hold).")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    next: Annotated[str | None, Query(description="The previous page's 'next'.")] = None,
    _: Principal = READ,
) -> dict[str, Any]:
    def search() -> dict[str, Any]:
        from strategyq.archive.store import RunFilter  # as ArchiveHandle.get: on first use

        flt = RunFilter.build(
            name=name,
            tag=tag,
            fingerprint=fingerprint,
            symbol=symbol,
            since=since,
            until=until,
            status=status,
            task_type=task_type,
            metric=metric,
            limit=limit,
            before=next,
        )
        page = state.archive.get().search(flt)
        return {"runs": page.runs, "next": page.next}

    return answer(search)


@router.get("/runs/{task_id:path}", summary="One archived run")
def run(
    state: State,
    task_id: RunId,
    result: Annotated[bool, Query(description="Include the full result record.")] = False,
    _: Principal = READ,
) -> dict[str, Any]:
    def read_run() -> dict[str, Any]:
        archive = state.archive.get()
        found = archive.run(task_id)
        if result:
            found["result"] = archive.result(task_id)
        return found

    return answer(read_run)
