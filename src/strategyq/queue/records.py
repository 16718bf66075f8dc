"""One builder per result record the queue writes at ``task_result:{id}``.

Every record is the frozen envelope ``{"status", "data", "updated_at"}``;
these functions are the only places that decide what each status's ``data``
holds, so a ``queued`` record means the same thing whoever wrote it.
"""

from __future__ import annotations

from typing import Any

import orjson

from strategyq.protocol.results import Status, dumps, envelope, error_data, utc_now_iso


def queued(task_id: str, **extra: Any) -> bytes:
    """A task waiting in the queue: pushed (``queued_at``), requeued or retried."""
    return dumps(envelope(Status.QUEUED, {"task_id": task_id, **extra}))


def running(
    task_id: str,
    task_type: str | None,
    worker_id: str,
    started_at: str,
    stage: str,
    attempt: int | None = None,
    submitted_at: str | None = None,
) -> bytes:
    """A run in progress, at ``stage`` (the attempt is known once the run is claimed;
    ``submitted_at``, when the task was first queued, once the claim has read it)."""
    data: dict[str, Any] = {} if submitted_at is None else {"submitted_at": submitted_at}
    data |= {
        "task_id": task_id,
        "task_type": task_type,
        "worker_id": worker_id,
        "started_at": started_at,
        "stage": stage,
    }
    if attempt is not None:
        data["attempt"] = attempt
    return dumps(envelope(Status.RUNNING, data))


def cancelled(at: str | None = None, **timing: Any) -> bytes:
    """A task cancelled by a client, before or while it ran."""
    now = at or utc_now_iso()
    return dumps(envelope(Status.CANCELLED, {"cancelled_at": now, "completed_at": now, **timing}))


def error(message: str, error_type: str, **extra: Any) -> bytes:
    """A task that ended with an error a person can act on."""
    return dumps(envelope(Status.ERROR, error_data(message, error_type, **extra)))


def completed(data: bytes, timing: dict[str, Any]) -> bytes:
    """A completed task: ``data`` is the executor's JSON payload, spliced, not decoded again."""
    extra = orjson.dumps(timing)[1:-1]
    body = data[:-1] + (b"," if data != b"{}" else b"") + extra + b"}"
    return (
        b'{"status":"completed","data":'
        + body
        + b',"updated_at":'
        + orjson.dumps(utc_now_iso())
        + b"}"
    )


def dead_letter(raw: bytes, reason: str, error_text: str, **extra: Any) -> bytes:
    """An entry of the dead-letter list (the message itself capped at 64 KiB)."""
    return dumps(
        {
            "raw": raw.decode("utf-8", "replace")[:65536],
            "reason": reason,
            "error": error_text,
            **extra,
            "at": utc_now_iso(),
        }
    )
