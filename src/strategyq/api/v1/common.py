"""Pieces several ``/v1`` resources share: path parameters, links, the unknown-task problem."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import Path, Response

from strategyq.api.problems import Problem

TaskId = Annotated[str, Path(min_length=1, max_length=200, description="The task's id.")]


def links(task_id: str) -> dict[str, str]:
    base = f"/v1/tasks/{task_id}"
    return {
        "self": base,
        "wait": base + "/wait",
        "events": base + "/events",
        "page": f"/tasks/{task_id}",
    }


def queued(task_id: str) -> Response:
    """The 202 answer to a queued task: its id, status and links, and a ``Location``."""
    # Serialised here, not through the response model (same shape, less work per task).
    body = {"task_id": task_id, "status": "queued", "links": links(task_id)}
    return Response(
        orjson.dumps(body),
        status_code=202,
        media_type="application/json",
        headers={"Location": f"/v1/tasks/{task_id}"},
    )


def unknown(task_id: str) -> Problem:
    return Problem(
        404,
        f"no task {task_id!r}: it was never queued, or its result expired "
        "(results are kept STRATEGYQ_RESULT_TTL seconds)",
    )


def raw_json(record: dict[str, Any], status_code: int = 200) -> Response:
    return Response(orjson.dumps(record), status_code=status_code, media_type="application/json")
