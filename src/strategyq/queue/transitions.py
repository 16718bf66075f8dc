"""Every transition of a task through Redis, one method each.

A :class:`TaskQueue` wraps one redis-py client (with or without
``decode_responses``) and the queue's name and lifetimes. Producers, workers,
the admin commands and the HTTP API all go through it; nothing else touches
the keys of :mod:`strategyq.queue.keys`. ``docs/queue.md`` draws the state
diagram these transitions implement.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
import redis

from strategyq.errors import TaskIdInUse, TaskValidationError, TenantQuotaExceeded
from strategyq.protocol.results import TERMINAL_STATUSES, Stage, decode_result, utc_now_iso
from strategyq.protocol.tenancy import BATCH, DEFAULT_TENANT
from strategyq.queue import keys, records
from strategyq.queue.scripts import scripts_for
from strategyq.queue.types import Claim, FinishVerdict, Reaped, Taken, text
from strategyq.settings import DEFAULT_RESULT_TTL_S, QUEUE_NAME

log = logging.getLogger(__name__)


ROUTE_BATCH = 1000
"""At most this many messages are routed from the queue's list into the lanes per take."""

QUOTA_RETRY_AFTER_S = 5
"""Retry-After of a refusal for max_queued: about the time a few tasks take."""


def utc_day() -> str:
    """Today, UTC, as ``YYYYMMDD`` (the day of ``max_combinations``)."""
    return time.strftime("%Y%m%d", time.gmtime())


def now_ms() -> int:
    """Wall-clock epoch milliseconds: the recent-task index's score."""
    return int(time.time() * 1000)


class TaskQueue:
    """The queue's transitions on one client.

    Args:
        client: any redis-py client.
        name: the list tasks are pushed onto.
        result_ttl_s: lifetime of results and of each task's bookkeeping.
        recent_max: cap on the recent-task index.
    """

    def __init__(
        self,
        client: redis.Redis,
        *,
        name: str = QUEUE_NAME,
        result_ttl_s: int = DEFAULT_RESULT_TTL_S,
        recent_max: int = keys.RECENT_MAX,
    ) -> None:
        self.client = client
        self.name = name
        self.result_ttl_s = result_ttl_s
        self.done_ttl_s = min(keys.DONE_TTL_S, result_ttl_s)
        self.recent_max = recent_max
        self.scripts = scripts_for(client)

    # ------------------------------------------------------------------ producers

    def push(
        self,
        task_id: str,
        raw: bytes,
        *,
        tenant: str = DEFAULT_TENANT,
        lane: str = BATCH,
        combinations: int = 0,
    ) -> int:
        """Check the lane and the tenant's quotas, write the ``queued`` record, then LPUSH
        the message, in one step; the queue's length.

        The record is written first so that a worker that takes the task at once
        always finds it. ``combinations`` (a sweep's) is checked against the tenant's
        ``max_combinations`` for the day; the worker that fans the sweep out counts it.

        Raises:
            TaskIdInUse: the id has a record (queued, running, or finished within the
                result TTL); nothing was pushed.
            TenantQuotaExceeded: the tenant is at one of its quotas; nothing was pushed.
            TaskValidationError: ``lane`` is not a lane of this queue; nothing was pushed.
        """
        queued = records.queued(task_id, queued_at=utc_now_iso())
        reply = self.scripts.push(
            keys=[
                keys.result(task_id),
                self.name,
                keys.tenant_combinations(tenant, utc_day()),
            ],
            args=[queued, self.result_ttl_s, raw, tenant, lane, combinations, now_ms(), task_id],
        )
        if isinstance(reply, list):
            kind = text(reply[0])
            if kind == "quota":
                quota, limit, used = text(reply[1]), int(reply[2]), int(reply[3])
                raise TenantQuotaExceeded(
                    tenant, quota, limit, used, self.retry_after_s(tenant, quota)
                )
            if kind == "unknown_lane":
                names = ", ".join(sorted(text(n) for n in reply[1:]))
                raise TaskValidationError(
                    f"task not queued: priority {lane!r} is not a lane of this queue; "
                    f"use one of: {names} (an operator adds lanes with strategyq lane set)"
                )
            raise TaskIdInUse(task_id, text(reply[1]))
        return int(reply)

    def retry_after_s(self, tenant: str, quota: str) -> int:
        """When a task refused by ``quota`` may be accepted: the next UTC day for
        combinations, the oldest result's expiry for result bytes, a few seconds else."""
        if quota == "max_combinations":
            now = time.time()
            return max(int(86400 - now % 86400), 1)
        if quota == "max_result_bytes":
            oldest = self.client.zrange(keys.tenant_results(tenant), 0, 0, withscores=True)
            if oldest:
                return max(int(float(oldest[0][1]) / 1000 - time.time()) + 1, 1)
        return QUOTA_RETRY_AFTER_S

    def result(self, task_id: str) -> dict[str, Any] | None:
        """The task's result record, or None when there is none."""
        return decode_result(self.client.get(keys.result(task_id)))

    def wait(self, task_id: str, timeout_s: float) -> dict[str, Any] | None:
        """Block until the task's result is terminal; None when ``timeout_s`` passed first.

        The terminal write pushes onto a per-task notification list; this reads
        the result first and then blocks on that list, so a result written in
        between is never missed, and nothing polls.
        """
        deadline = time.monotonic() + timeout_s
        done_key = keys.done(task_id)
        # Block for at most the client's own socket timeout (less a margin) per call,
        # so a client built with a short socket_timeout never times out mid-BLPOP.
        socket_timeout = self.client.connection_pool.connection_kwargs.get("socket_timeout")
        max_block = max(float(socket_timeout) - 0.5, 0.5) if socket_timeout else None
        result = self.result(task_id)
        while not _is_terminal(result):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            block = min(remaining, max_block) if max_block else remaining
            try:
                popped = self.client.blpop([done_key], timeout=max(block, 0.01))
            except redis.TimeoutError:
                popped = None
            if popped is None:
                result = self.result(task_id)
                continue
            # Put the token back for any other waiter on the same task, and read the
            # result, in one round trip. The put-back is a courtesy: a server that refuses
            # it (OOM at maxmemory) must not hide a result that is there.
            pipe = self.client.pipeline(transaction=False)
            pipe.rpush(done_key, popped[1])
            pipe.expire(done_key, self.done_ttl_s)
            pipe.get(keys.result(task_id))
            replies = pipe.execute(raise_on_error=False)
            if isinstance(replies[2], Exception):
                raise replies[2]
            result = decode_result(replies[2])
        return result

    def cancel(self, task_id: str) -> str:
        """Ask for a task to be cancelled; the status it had (``unknown`` without a record)."""
        status = self.scripts.cancel(
            keys=[keys.result(task_id), keys.cancel(task_id), keys.done(task_id), keys.RECENT],
            args=[
                self.result_ttl_s,
                records.cancelled(),
                self.done_ttl_s,
                task_id,
                now_ms(),
                self.recent_max,
            ],
        )
        return text(status)

    def depth(self) -> int:
        """Tasks waiting: in the queue's list and in every lane."""
        pipe = self.client.pipeline(transaction=False)
        pipe.llen(self.name)
        pipe.hvals(keys.lane_depth(self.name))
        ingress, lanes = pipe.execute()
        return int(ingress) + sum(int(n) for n in lanes)

    # ------------------------------------------------------------------ workers

    def take(self, worker_id: str, block_s: float | None) -> Taken | None:
        """Move the next message, lanes by weight and tenants in turn, into the worker's
        processing list (None: nothing to take).

        ``block_s=None`` does not block (burst mode); otherwise, when nothing waits, this
        blocks until a message arrives in the queue's list (at most ``block_s``).
        """
        taken = self._take(worker_id)
        if taken is not None or block_s is None:
            return taken
        # Wait for a message without taking it: BLMOVE of the list onto its own end
        # leaves it as it was, so nothing is ever held outside a list.
        arrived = self.client.blmove(
            self.name,
            self.name,
            block_s,  # type: ignore[arg-type]  # the server takes fractional seconds
            "RIGHT",
            "RIGHT",
        )
        if arrived is None:
            return None
        return self._take(worker_id)

    def _take(self, worker_id: str) -> Taken | None:
        reply = self.scripts.take(
            keys=[self.name, keys.processing(worker_id)],
            args=[now_ms(), ROUTE_BATCH, keys.WAIT_SAMPLES, self.result_ttl_s],
        )
        if reply is None:
            return None
        return Taken.from_reply(reply)

    def repair_tenants(self) -> int:
        """Rebuild the tenants' in-flight counts from the processing lists (the reaper's
        last step); the number of messages in flight."""
        return int(
            self.scripts.tenants_repair(
                keys=[keys.WORKERS, keys.TENANT_INFLIGHT], args=[keys.PREFIX]
            )
        )

    def count_combinations(self, tenant: str, combinations: int) -> TenantQuotaExceeded | None:
        """Count a sweep's combinations against its tenant's day; the refusal when that
        would pass ``max_combinations`` (nothing counted then)."""
        reply = self.scripts.combinations(
            keys=[keys.tenant_combinations(tenant, utc_day())], args=[tenant, combinations]
        )
        if int(reply[0]) == 1:
            return None
        return TenantQuotaExceeded(
            tenant,
            "max_combinations",
            int(reply[2]),
            int(reply[1]),
            self.retry_after_s(tenant, "max_combinations"),
            f", and this sweep has {combinations}",
        )

    def result_room(self, tenant: str, nbytes: int) -> TenantQuotaExceeded | None:
        """The refusal when storing ``nbytes`` more would take the tenant past its
        ``max_result_bytes`` (checked before a terminal write; concurrent writes of one
        tenant may pass it by at most one result each)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hget(keys.tenant(tenant), "max_result_bytes")
        pipe.hget(keys.TENANT_RESULT_BYTES, tenant)
        cap, used = pipe.execute()
        if cap is None:
            return None
        limit, stored = int(cap), int(used or 0)
        if stored + nbytes <= limit:
            return None
        return TenantQuotaExceeded(
            tenant,
            "max_result_bytes",
            limit,
            stored,
            self.retry_after_s(tenant, "max_result_bytes"),
            f", and this result has {nbytes}",
        )

    def claim(self, worker_id: str, task_id: str, task_type: str | None, started_at: str) -> Claim:
        """Start a run: count the attempt, take a fencing token, write ``running``.

        When the claim's verdict is not ``run``, acknowledge the message with :meth:`ack`
        (a ``duplicate`` with :meth:`dead_letter`). A message is a duplicate when the id's
        record is terminal (and it was not cancelled while queued), or when a live worker
        other than ``worker_id`` holds the id's token.
        """
        running = records.running(task_id, task_type, worker_id, started_at, Stage.STARTING)
        reply = self.scripts.claim(
            keys=[
                keys.result(task_id),
                keys.attempts(task_id),
                keys.token(task_id),
                keys.FENCE_COUNTER,
                keys.cancel(task_id),
                keys.done(task_id),
                keys.RECENT,
            ],
            args=[
                self.result_ttl_s,
                running,
                records.cancelled(),
                self.done_ttl_s,
                task_id,
                now_ms(),
                self.recent_max,
                task_type or "",
                worker_id,
                keys.PREFIX,
            ],
        )
        return Claim.from_reply(reply)

    def ack(self, worker_id: str, raw: bytes) -> None:
        """Drop a message this worker will not run from its processing list."""
        self.scripts.ack(keys=[keys.processing(worker_id), keys.DEAD_LETTER], args=[raw, ""])

    def stage(self, pipe: Any, task_id: str, token: str, record: bytes) -> None:
        """Queue, on ``pipe``, an update of a running record (only while ``token`` is current)."""
        self.scripts.stage(
            keys=[keys.result(task_id), keys.token(task_id)],
            args=[token, record, self.result_ttl_s],
            client=pipe,
        )

    def cancel_flags(self, pipe: Any, task_ids: list[str]) -> None:
        """Queue, on ``pipe``, a read of the cancel flags of ``task_ids``."""
        pipe.mget([keys.cancel(t) for t in task_ids])

    def finish(
        self,
        worker_id: str,
        task_id: str,
        token: str,
        record: bytes,
        raw: bytes,
        *,
        status: str = "",
        task_type: str = "",
    ) -> FinishVerdict:
        """The terminal write of a run: the result, the ack, the recent index, the wake-up.

        ``status`` and ``task_type`` (of ``record``) file the task in the recent
        index's filtered views as well.
        """
        reply = self.scripts.finish(
            keys=[
                keys.result(task_id),
                keys.token(task_id),
                keys.processing(worker_id),
                keys.done(task_id),
                keys.attempts(task_id),
                keys.cancel(task_id),
                keys.RECENT,
                self.name,
            ],
            args=[
                token,
                record,
                self.result_ttl_s,
                raw,
                self.done_ttl_s,
                task_id,
                now_ms(),
                self.recent_max,
                status,
                task_type,
            ],
        )
        return FinishVerdict(text(reply))

    def stored_record(self, task_id: str) -> bytes | None:
        """The result record exactly as stored (to recognise our own write after a lost reply)."""
        value = self.client.get(keys.result(task_id))
        if value is None:
            return None
        return value if isinstance(value, bytes) else value.encode()

    def requeue(
        self,
        worker_id: str,
        task_id: str,
        token: str,
        raw: bytes,
        *,
        submitted_at: str | None = None,
    ) -> bool:
        """Hand an unfinished run back to the queue's consumer end (it runs next).

        ``token=""`` puts back a message whose run is unknown (found in the processing
        list without a handler): a token this worker holds for the task is revoked.
        ``submitted_at`` (when the task was first queued) stays in its queued record.
        """
        kept = {} if submitted_at is None else {"submitted_at": submitted_at}
        queued = records.queued(task_id, requeued_at=utc_now_iso(), **kept)
        reply = self.scripts.requeue(
            keys=[
                keys.processing(worker_id),
                self.name,
                keys.token(task_id),
                keys.attempts(task_id),
                keys.result(task_id),
            ],
            args=[raw, token, queued, self.result_ttl_s, worker_id],
        )
        return bool(int(reply))

    def processing(self, worker_id: str) -> list[bytes]:
        """The messages in the worker's processing list (newest first)."""
        return [
            m if isinstance(m, bytes) else str(m).encode()
            for m in self.client.lrange(keys.processing(worker_id), 0, -1)
        ]

    def dead_letter(
        self, worker_id: str, raw: bytes, reason: str, error_text: str, **extra: Any
    ) -> None:
        """Move a message the worker will not run from its processing list to the dead
        letters (``malformed``: it names no task; ``duplicate``: its id is in use)."""
        entry = records.dead_letter(raw, reason, error_text, worker_id=worker_id, **extra)
        self.scripts.ack(keys=[keys.processing(worker_id), keys.DEAD_LETTER], args=[raw, entry])

    def processing_len(self, worker_id: str) -> int:
        """Messages the worker has taken and not finished."""
        return int(self.client.llen(keys.processing(worker_id)))

    # ------------------------------------------------------------------ liveness

    def reap(self, worker_id: str, max_attempts: int) -> Reaped:
        """Recover one worker's tasks if its heartbeat has expired."""
        reply = self.scripts.reap(
            keys=[
                keys.processing(worker_id),
                keys.heartbeat(worker_id),
                self.name,
                keys.DEAD_LETTER,
                keys.WORKERS,
                keys.RECENT,
            ],
            args=[
                worker_id,
                max_attempts,
                self.result_ttl_s,
                utc_now_iso(),
                keys.PREFIX,
                self.done_ttl_s,
                now_ms(),
                self.recent_max,
            ],
        )
        back, lost = int(reply[0]), int(reply[1])
        if back < 0:
            return Reaped(0, 0, alive=True)
        return Reaped(back, lost)

    def beat(self, worker_id: str, record: bytes, ttl_ms: int) -> tuple[int, int]:
        """Refresh the heartbeat and registry entry; (queue depth, dead letters), one round trip."""
        pipe = self.client.pipeline(transaction=True)
        pipe.set(keys.heartbeat(worker_id), record, px=ttl_ms)
        pipe.sadd(keys.WORKERS, worker_id)
        pipe.llen(self.name)
        pipe.llen(keys.DEAD_LETTER)
        pipe.hvals(keys.lane_depth(self.name))
        depth, dead, lanes = pipe.execute()[2:]
        return int(depth) + sum(int(n) for n in lanes), int(dead)

    def unregister(self, worker_id: str) -> None:
        """Remove a stopping worker's heartbeat and registry entry."""
        pipe = self.client.pipeline(transaction=True)
        pipe.delete(keys.heartbeat(worker_id))
        pipe.srem(keys.WORKERS, worker_id)
        pipe.execute()

    def is_alive(self, worker_id: str) -> bool:
        """Whether a worker with this id has a live heartbeat."""
        return bool(self.client.exists(keys.heartbeat(worker_id)))

    def heartbeat_record(self, worker_id: str) -> dict[str, Any] | None:
        """The worker's live heartbeat record (None when it has none)."""
        raw = self.client.get(keys.heartbeat(worker_id))
        if raw is None:
            return None
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return {}
        return record if isinstance(record, dict) else {}

    def drop_heartbeat(self, worker_id: str) -> None:
        """Delete a heartbeat whose process is known to be gone (so it can be reaped now)."""
        self.client.delete(keys.heartbeat(worker_id))

    def registered_workers(self) -> list[str]:
        """Every worker id in the registry (alive or not yet reaped)."""
        return sorted(text(m) for m in self.client.smembers(keys.WORKERS))

    def workers_alive(self) -> int:
        """How many registered workers have a live heartbeat."""
        members = self.registered_workers()
        if not members:
            return 0
        return int(self.client.exists(*(keys.heartbeat(m) for m in members)))

    def reap_dead_workers(self, me: str, max_attempts: int, lock_ms: int) -> Reaped:
        """Recover the tasks of every registered worker whose heartbeat expired.

        Under a short lock, so one worker reaps at a time; ``me`` is never reaped.
        """
        if not self.client.set(keys.REAPER_LOCK, me, nx=True, px=lock_ms):
            return Reaped(0, 0)
        requeued = dead = 0
        try:
            others = [w for w in self.registered_workers() if w != me]
            # One round trip tells the live from the dead; only the dead get a script
            # call, so a reap costs a few round trips however many workers there are.
            pipe = self.client.pipeline(transaction=False)
            for worker_id in others:
                pipe.exists(keys.heartbeat(worker_id))
            beating = pipe.execute() if others else []
            for worker_id, alive in zip(others, beating, strict=True):
                if alive:
                    continue
                reaped = self.reap(worker_id, max_attempts)
                if reaped.requeued or reaped.dead_lettered:
                    log.warning(
                        "worker %s is gone: %d task(s) back in the queue, %d dead-lettered",
                        worker_id,
                        reaped.requeued,
                        reaped.dead_lettered,
                    )
                requeued += reaped.requeued
                dead += reaped.dead_lettered
            self.repair_tenants()
        finally:
            if self.client.get(keys.REAPER_LOCK) in (me, me.encode()):
                self.client.delete(keys.REAPER_LOCK)
        return Reaped(requeued, dead)


def _is_terminal(result: dict[str, Any] | None) -> bool:
    return result is not None and result.get("status") in TERMINAL_STATUSES
