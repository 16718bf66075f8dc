"""The envelope of a queued message: its ``task_id`` and ``task_type``, read without its args.

The worker reads only this; the executor's one full parse
(:func:`strategyq.protocol.task.parse_task`) starts from the same helpers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

from strategyq.errors import TaskValidationError
from strategyq.protocol.tenancy import DEFAULT_TENANT, tenant_and_lane


class TaskType(StrEnum):
    BACKTEST = "backtest"
    SCREENING = "screening"
    SWEEP = "sweep"
    SWEEP_CHUNK = "sweep_chunk"
    """One chunk of a sweep's combinations; made by the worker that fans a sweep out."""


class MalformedTask(TaskValidationError):
    """Raised when a queued message is not a valid task (``task_id`` set when readable)."""

    def __init__(self, message: str, task_id: str | None = None) -> None:
        super().__init__(message)
        self.task_id = task_id


@dataclass(frozen=True)
class Envelope:
    """What the worker reads of a message: enough to claim it and log it.

    The worker decodes the JSON once and checks only the envelope; the
    executor validates the args (with the worker's limits) in its one full
    parse, so a task is validated once per run, not once per process.
    """

    task_id: str
    task_type: TaskType
    strategy_code: str | None
    raw: bytes
    sweep_id: str | None = None
    """The sweep a ``sweep_chunk`` belongs to (its cancel flag stops the chunk)."""
    timeout_s: float | None = None  # the task's own time limit, when it asks for one
    tenant: str = DEFAULT_TENANT
    lane: str = ""  # the lane it waited in (its priority, or its type's default)


def read_envelope(raw: bytes, *, max_task_bytes: int, max_message_bytes: int) -> Envelope:
    """The envelope of one queued message.

    A message up to ``max_message_bytes`` is decoded to find its ``task_id``
    wherever it sits (Go's ``json.Marshal`` sorts keys: ``args`` comes first),
    so a producer hears back about an oversized task; beyond that hard cap the
    message is not decoded at all.

    Raises:
        MalformedTask: ``task_id`` set when the message named one, so the
            producer gets an error result; else it is for the dead letters.
    """
    if len(raw) > max_message_bytes:
        raise MalformedTask(
            f"message is {len(raw)} bytes, above the hard cap of {max_message_bytes} "
            "(STRATEGYQ_MAX_MESSAGE_BYTES); it was not read: send tasks of at most "
            f"{max_task_bytes} bytes (STRATEGYQ_MAX_TASK_BYTES)"
        )
    message = decode_message(raw)
    task_id = message_task_id(message)
    if len(raw) > max_task_bytes:
        raise MalformedTask(too_large(len(raw), max_task_bytes), task_id)
    task_type = message_task_type(message, task_id)
    try:
        tenant, lane = tenant_and_lane(message)
    except TaskValidationError as exc:
        raise MalformedTask(str(exc), task_id) from None
    args = message.get("args")
    code = args.get("strategy_code") if isinstance(args, dict) else None
    sweep_id = args.get("sweep_id") if isinstance(args, dict) else None
    # Read for the worker's deadline only; the executor validates it with the rest.
    asked = args.get("timeout_seconds") if isinstance(args, dict) else None
    timeout_s = (
        float(asked)
        if isinstance(asked, int | float) and not isinstance(asked, bool) and asked > 0
        else None
    )
    return Envelope(
        task_id,
        task_type,
        code if isinstance(code, str) else None,
        raw,
        sweep_id if task_type is TaskType.SWEEP_CHUNK and isinstance(sweep_id, str) else None,
        timeout_s,
        tenant,
        lane,
    )


def too_large(size: int, limit: int) -> str:
    return (
        f"task message is {size} bytes; the limit is {limit} "
        "(STRATEGYQ_MAX_TASK_BYTES): send less code or fewer symbols"
    )


def decode_message(data: bytes) -> dict[str, Any]:
    try:
        message = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise MalformedTask(f"task message is not valid JSON: {exc}") from None
    if not isinstance(message, dict):
        raise MalformedTask(
            f"task message must be a JSON object, got a JSON {type(message).__name__}"
        )
    return message


def message_task_id(message: Mapping[str, Any]) -> str:
    task_id = message.get("task_id")
    if not isinstance(task_id, str) or not task_id.strip() or len(task_id) > 200:
        raise MalformedTask(
            f"task_id must be a non-empty string of at most 200 characters, got {show(task_id)}"
        )
    return task_id


def message_task_type(message: Mapping[str, Any], task_id: str) -> TaskType:
    try:
        return TaskType(str(message.get("task_type")))
    except ValueError:
        raise MalformedTask(
            "task_type must be 'backtest', 'screening' or 'sweep', got "
            f"{show(message.get('task_type'))}",
            task_id,
        ) from None


def show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
