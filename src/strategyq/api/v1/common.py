"""Pieces several ``/v1`` resources share: path parameters, links, the unknown-task problem."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

import orjson
from fastapi import Path, Response

from strategyq.api.problems import Problem

TaskId = Annotated[str, Path(min_length=1, max_length=200, description="The task's id.")]


PATH_SAFE = ":@"
"""Characters left as they are in an id put in a URL path (RFC 3986 allows them there)."""


def in_path(name: str) -> str:
    """An id as one URL path segment: percent-encoded, ``/`` included.

    An id may hold any printable character, and a header must be Latin-1.
    """
    return quote(name, safe=PATH_SAFE)


def links(task_id: str) -> dict[str, str]:
    path = in_path(task_id)
    base = f"/v1/tasks/{path}"
    return {
        "self": base,
        "wait": base + "/wait",
        "events": base + "/events",
        "page": f"/tasks/{path}",
    }


def queued(task_id: str) -> Response:
    """The 202 answer to a queued task: its id, status and links, and a ``Location``."""
    # Serialised here, not through the response model (same shape, less work per task).
    urls = links(task_id)
    body = {"task_id": task_id, "status": "queued", "links": urls}
    return Response(
        orjson.dumps(body),
        status_code=202,
        media_type="application/json",
        headers={"Location": urls["self"]},
    )


def unknown(task_id: str) -> Problem:
    return Problem(
        404,
        f"no task {task_id!r}: it was never queued, or its result expired "
        "(results are kept STRATEGYQ_RESULT_TTL seconds)",
    )


def raw_json(record: dict[str, Any], status_code: int = 200) -> Response:
    return Response(orjson.dumps(record), status_code=status_code, media_type="application/json")
