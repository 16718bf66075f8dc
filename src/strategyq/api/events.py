"""Following one task: long-poll until it is terminal, or stream each status change (SSE).

Both block on Redis rather than poll, through the queue's read surface: the
long-poll is :meth:`~strategyq.queue.view.QueueView.wait` (a blocking pop on the
task's completion list), and the stream is
:meth:`~strategyq.queue.view.QueueView.events` (the task's event channel, on
which every transition script publishes the record it wrote: queued, running
with each stage, terminal). The stream reads the current record after
subscribing, so a change between the two is never missed; it also re-reads the
record every few seconds, so an event lost with a dropped connection only
delays the stream.

:func:`queue_stream` follows every task at once (the queue-wide stream, on
:meth:`~strategyq.queue.view.QueueView.queue_events`): the live overview redraws
when it says something changed, rather than polling.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import redis
from starlette.requests import Request

from strategyq.api.followers import shielded
from strategyq.api.shapes import clean_data
from strategyq.api.state import ApiState
from strategyq.protocol.results import TERMINAL_STATUSES

POLL_S = 1.0
RESYNC_S = 5.0
KEEPALIVE_S = 15.0


def _event(record: dict[str, Any], task_id: str) -> dict[str, Any]:
    data = clean_data(record.get("data"))
    event = {
        "task_id": task_id,
        "status": record.get("status"),
        "updated_at": record.get("updated_at"),
    }
    for name in ("stage", "worker_id", "attempt", "error_type", "error", "progress"):
        if data.get(name) is not None:
            event[name] = data[name]
    return event


def sse(name: str, payload: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


def _key(event: dict[str, Any]) -> tuple[Any, ...]:
    return (event.get("status"), event.get("stage"), event.get("attempt"), event.get("updated_at"))


async def stream(state: ApiState, request: Request, task_id: str) -> AsyncIterator[bytes]:
    """``status`` events from the current one to the terminal one, then the stream ends."""
    subscription = state.view.events(task_id)
    try:
        await state.blocking(subscription.subscribe)
        last: tuple[Any, ...] | None = None
        deadline = time.monotonic() + state.config.max_wait_s
        next_sync = 0.0
        last_sent = time.monotonic()
        while True:
            now = time.monotonic()
            candidates: list[dict[str, Any]] = []
            if now >= next_sync:
                next_sync = now + RESYNC_S
                record = await state.blocking(state.view.task, task_id)
                if record is not None:
                    candidates.append(_event(record, task_id))
            published = await state.blocking(subscription.records, POLL_S)
            candidates.extend(_event(record, task_id) for record in published)
            for event in candidates:
                if last is not None and _key(event) == last:
                    continue
                # Never step back from a terminal status or to an older record.
                if last is not None and last[0] in TERMINAL_STATUSES:
                    continue
                last = _key(event)
                last_sent = time.monotonic()
                yield sse("status", event)
            if last is not None and last[0] in TERMINAL_STATUSES:
                return
            if await request.is_disconnected():
                return
            if time.monotonic() >= deadline:
                yield sse(
                    "timeout",
                    {
                        "task_id": task_id,
                        "detail": "stream time limit reached; reconnect to keep following the task",
                    },
                )
                return
            if time.monotonic() - last_sent >= KEEPALIVE_S:
                last_sent = time.monotonic()
                yield b": keep-alive\n\n"
    finally:
        # Shielded: a client that left cancels the stream, and its subscription must
        # still be closed (else the connection stays subscribed for good).
        with shielded(), contextlib.suppress(redis.RedisError):
            await state.blocking(subscription.close)


QUEUE_BATCH = 200
"""Changes sent in one ``changes`` event at most (a burst sends each task's latest)."""


async def queue_stream(state: ApiState, request: Request) -> AsyncIterator[bytes]:
    """``changes`` events: the tasks whose record changed (each task's latest status,
    stage and time), at most one event per poll; ``timeout`` at the time limit."""
    subscription = state.view.queue_events()
    try:
        await state.blocking(subscription.subscribe)
        # Sent at once, so a client knows the stream is up (and the headers went out).
        yield sse("ready", {"queue": state.queue})
        deadline = time.monotonic() + state.config.max_wait_s
        last_sent = time.monotonic()
        while True:
            published = await state.blocking(subscription.records, POLL_S)
            latest: dict[str, dict[str, Any]] = {}
            for task_id, record in published:
                latest[task_id] = _event(record, task_id)
            if latest:
                changes = list(latest.values())[-QUEUE_BATCH:]
                for change in changes:
                    change.pop("error", None)  # a traceback is the task page's to show
                last_sent = time.monotonic()
                yield sse("changes", {"changes": changes, "count": len(latest)})
            if await request.is_disconnected():
                return
            if time.monotonic() >= deadline:
                yield sse("timeout", {"detail": "stream time limit reached; reconnect"})
                return
            if time.monotonic() - last_sent >= KEEPALIVE_S:
                last_sent = time.monotonic()
                yield b": keep-alive\n\n"
    finally:
        with shielded(), contextlib.suppress(redis.RedisError):
            await state.blocking(subscription.close)
