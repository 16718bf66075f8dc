"""``/v1/runs``: the run archive (every run kept past Redis' result TTL), searched and read.

The same :class:`~strategyq.archive.store.RunFilter` answers ``strategyq runs``
and :func:`strategyq.runs`, so the three agree on every filter.
"""

from __future__ import annotations

import threading
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query

from strategyq.api.auth import Principal, requirement
from strategyq.api.config import Scope
from strategyq.api.problems import Problem
from strategyq.api.state import ApiState
from strategyq.archive.store import Archive, RunFilter
from strategyq.errors import ArchiveError, ArchiveUnavailable, RunNotFound

RunId = Annotated[str, Path(min_length=1, max_length=200, description="The run's task id.")]


class ArchiveHandle:
    """The server's connection to the archive, opened (and migrated) on first use."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._archive: Archive | None = None
        self._lock = threading.Lock()

    def get(self) -> Archive:
        with self._lock:
            if self._archive is None:
                try:
                    self._archive = Archive.open(self.url)
                except ArchiveUnavailable as exc:
                    raise Problem(503, str(exc), headers={"Retry-After": "5"}) from None
            return self._archive


def handle(state: ApiState) -> ArchiveHandle:
    """The archive handle of this server (one per app)."""
    found = getattr(state, "_archive_handle", None)
    if found is None:
        found = ArchiveHandle(state.settings.archive_db_url)
        state._archive_handle = found  # type: ignore[attr-defined]
    return found


def answer(fn: Any, *args: Any) -> Any:
    """Run an archive read, turning its errors into problem documents."""
    try:
        return fn(*args)
    except RunNotFound as exc:
        raise Problem(404, str(exc)) from None
    except ArchiveUnavailable as exc:
        raise Problem(503, str(exc), headers={"Retry-After": "5"}) from None
    except ArchiveError as exc:
        raise Problem(422, str(exc)) from None


def build(state: ApiState) -> APIRouter:
    read = Depends(requirement(state.config, Scope.READ))
    router = APIRouter(prefix="/v1")
    archive = handle(state)

    @router.get("/runs", summary="Search archived runs", tags=["runs"])
    def runs(
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
        _: Principal = read,
    ) -> dict[str, Any]:
        def search() -> dict[str, Any]:
            flt = RunFilter.build(
                name=name, tag=tag, fingerprint=fingerprint, symbol=symbol, since=since,
                until=until, status=status, task_type=task_type, metric=metric, limit=limit,
                before=next,
            )  # fmt: skip
            page = archive.get().search(flt)
            return {"runs": page.runs, "next": page.next}

        result: dict[str, Any] = answer(search)
        return result

    @router.get("/runs/{task_id:path}", summary="One archived run", tags=["runs"])
    def run(
        task_id: RunId,
        result: Annotated[bool, Query(description="Include the full result record.")] = False,
        _: Principal = read,
    ) -> dict[str, Any]:
        def read_run() -> dict[str, Any]:
            found = archive.get().run(task_id)
            if result:
                found["result"] = archive.get().result(task_id)
            return found

        out: dict[str, Any] = answer(read_run)
        return out

    return router
