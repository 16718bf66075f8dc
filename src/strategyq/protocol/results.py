"""Result records: what a task's ``task_result:{id}`` holds, and how to write and read it.

Results are plain JSON (no NaN, no numpy types) with ISO 8601 UTC times ending in ``Z``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson


class Stage(StrEnum):
    """Where a running task is; written to its ``running`` record as ``data.stage``."""

    STARTING = "starting"
    LOADING_DATA = "loading_data"
    RUNNING_STRATEGY = "running_strategy"
    COMPUTING_METRICS = "computing_metrics"
    RUNNING_CHUNKS = "running_chunks"
    """A sweep whose chunks are queued or running."""
    CLAIMED = "claimed"
    """Hook point only (:class:`~strategyq.worker.Hooks`): the run holds its token."""
    FINISHING = "finishing"
    """Hook point only: just before the terminal write."""


EXECUTOR_STAGES = (Stage.LOADING_DATA, Stage.RUNNING_STRATEGY, Stage.COMPUTING_METRICS)
"""The stages the executor reports, in order."""


class Status(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    ERROR = "error"
    CANCELLED = "cancelled"


TERMINAL_STATUSES = frozenset({Status.COMPLETED, Status.ERROR, Status.CANCELLED})


def utc_now_iso() -> str:
    """Now, as ``2024-01-15T10:30:00Z``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def dumps(value: Any) -> bytes:
    """Plain JSON bytes: NaN/Infinity become null, numpy scalars become numbers."""
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)


def envelope(status: Status, data: Mapping[str, Any]) -> dict[str, Any]:
    """The result record stored at ``task_result:{id}``."""
    return {"status": status.value, "data": dict(data), "updated_at": utc_now_iso()}


def error_data(message: str, error_type: str, **extra: Any) -> dict[str, Any]:
    """The ``data`` of an error result."""
    return {"error": message, "error_type": error_type, "completed_at": utc_now_iso(), **extra}


def decode_result(raw: bytes | str | None) -> dict[str, Any] | None:
    """A stored result as a dict (None when absent or unreadable)."""
    if raw is None:
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None
