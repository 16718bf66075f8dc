"""Every Redis key strategyq uses, with its type and lifetime.

Only :mod:`strategyq.queue` reads or writes these keys (``tests/unit/
test_queue_owns_keys.py`` checks every other module); the rest of strategyq
reads through :class:`~strategyq.queue.view.QueueView` and writes through the
queue's transitions. ``docs/queue.md`` draws the lifecycle of each.

Producers only ever touch ``strategy_queue`` and ``task_result:{id}`` (the
frozen wire format); everything else is the workers' bookkeeping, under the
``strategyq:`` prefix, and expires or is removed when its task ends so
nothing grows without bound.
"""

from __future__ import annotations

QUEUE_NAME = "strategy_queue"
"""LIST: the queue producers LPUSH onto (``settings.QUEUE_NAME``, frozen)."""

RESULT_PREFIX = "task_result:"
"""STRING ``task_result:{task_id}``: the JSON result. TTL: ``result_ttl_s`` (default one day)."""

PREFIX = "strategyq:"

DEAD_LETTER = PREFIX + "dead_letter"
"""LIST of JSON entries ``{"raw", "reason", "task_id", "attempts", "at"}``. No TTL:
an operator inspects, retries (``strategyq dlq retry``) or purges it."""

WORKERS = PREFIX + "workers"
"""SET of worker ids that have registered. Members whose heartbeat expired are
removed by the reaper once their processing list is empty."""

REAPER_LOCK = PREFIX + "reaper_lock"
"""STRING held by the worker currently reaping. TTL: a few reaper intervals."""

FENCE_COUNTER = PREFIX + "fence"
"""STRING (integer): the last fencing token handed out. No TTL (one key)."""

RECENT = PREFIX + "recent"
"""ZSET of task ids by the time (epoch milliseconds) their terminal result was
written: the recent-task index. Written in the same Lua step as every terminal
result (finish, cancel of a queued task, claim of a cancelled one, the reaper's
dead letter); trimmed at each write to the newest ``recent_max`` members and to
those younger than ``result_ttl_s`` (older members' results have expired). The
key itself expires ``result_ttl_s`` after the last write."""

RECENT_MAX = 10_000
"""Default cap on the recent-task index (``STRATEGYQ_RECENT_MAX``)."""


SCHEDULES = PREFIX + "schedules"
"""HASH schedule name -> its spec (JSON: cron, tz, task_type, args, created_at). No TTL:
``strategyq schedule remove`` deletes a field."""

SCHEDULES_PAUSED = PREFIX + "schedules:paused"
"""SET of the names of paused schedules. No TTL."""

SCHEDULES_LAST = PREFIX + "schedules:last"
"""HASH schedule name -> epoch seconds of the last slot enqueued (or of its creation or
resumption, so no earlier slot runs). No TTL; removed with the schedule."""


def result(task_id: str) -> str:
    """STRING: the task's JSON result. TTL ``result_ttl_s``."""
    return RESULT_PREFIX + task_id


def processing(worker_id: str) -> str:
    """LIST: raw messages this worker has taken and not yet finished. No TTL; the
    reaper empties it when the worker's heartbeat expires."""
    return f"{PREFIX}processing:{worker_id}"


def heartbeat(worker_id: str) -> str:
    """STRING (JSON worker info): alive while it exists. TTL ``heartbeat_timeout_s``."""
    return f"{PREFIX}heartbeat:{worker_id}"


def attempts(task_id: str) -> str:
    """STRING (integer): how many runs of the task have started. TTL ``result_ttl_s``."""
    return f"{PREFIX}attempts:{task_id}"


def token(task_id: str) -> str:
    """STRING ``<n>/<worker id>``: the fencing token of the task's current run. No TTL (an
    eviction policy that takes keys with a TTL never takes it); deleted by the terminal
    write; replaced by ``revoked`` (TTL ``result_ttl_s``) by a requeue or the reaper."""
    return f"{PREFIX}token:{task_id}"


def cancel(task_id: str) -> str:
    """STRING: present when a client asked to cancel the task. TTL ``result_ttl_s``."""
    return f"{PREFIX}cancel:{task_id}"


def done(task_id: str) -> str:
    """LIST: one element pushed by the terminal write, for ``wait_for_result``'s
    blocking pop. TTL 300 s (waiters that arrive later read the result directly)."""
    return f"{PREFIX}done:{task_id}"


DONE_TTL_S = 300


def sweep(task_id: str) -> str:
    """HASH of a sweep split into chunks: ``plan`` (JSON), ``total`` combinations,
    ``total_chunks``, ``done`` (combinations counted). TTL ``result_ttl_s``; deleted when
    the sweep's result is written."""
    return f"{PREFIX}sweep:{task_id}"


def sweep_digests(task_id: str) -> str:
    """HASH ``d:<chunk index>`` -> SHA-1 of the chunk message the sweep's fan-out queued.
    Only a message with its digest here runs as a chunk. TTL ``result_ttl_s``; kept when
    the sweep's result is written, so its late chunks are still told apart from forgeries."""
    return f"{PREFIX}sweep_digests:{task_id}"


def sweep_chunks(task_id: str) -> str:
    """HASH chunk index -> that chunk's result (JSON), each set once (HSETNX).
    TTL ``result_ttl_s``; deleted when the sweep's result is written."""
    return f"{PREFIX}sweep_chunks:{task_id}"


def recent_by(status: str | None = None, task_type: str | None = None) -> str:
    """ZSET like :data:`RECENT` (same writes, trims and TTL), of one terminal status
    and/or one task type: ``strategyq:recent:status:error``,
    ``strategyq:recent:type:backtest``, ``strategyq:recent:backtest:error``."""
    if status and task_type:
        return f"{RECENT}:{task_type}:{status}"
    if status:
        return f"{RECENT}:status:{status}"
    if task_type:
        return f"{RECENT}:type:{task_type}"
    return RECENT


def events(task_id: str) -> str:
    """Pub/Sub CHANNEL (not a key): every script that writes the task's result record
    publishes it here too (queued, running with each stage, terminal); ``lua/_events.lua``
    builds the same name. Nothing is stored."""
    return f"{PREFIX}events:{task_id}"


EVENTS_PATTERN = f"{PREFIX}events:*"
"""PSUBSCRIBE pattern matching every task's :func:`events` channel: the queue-wide stream."""


ARCHIVE = PREFIX + "archive"
"""STRING: present while a run archive is on (``strategyq archive`` sets it; ``strategyq
archive --off`` removes it); its value caps :data:`ARCHIVE_FEED`'s length. No TTL, so no
eviction policy takes it and no run ends unseen while the archiver is down."""

ARCHIVE_FEED = PREFIX + "archive:feed"
"""STREAM of ``{id, status, type, ms}``: one entry per run that ended while the archive is
on, appended in the same Lua step as the terminal result (``lua/_archive.lua``). No TTL;
trimmed (approximately) to the length in :data:`ARCHIVE`. The archiver reads it from its
cursor, which it keeps in the archive database, and never writes it."""


def task(task_id: str) -> str:
    """STRING: the task's message, kept for the archiver while an archive is on (written
    by the run's terminal write, or by a sweep's fan-out). TTL ``result_ttl_s``."""
    return f"{PREFIX}task:{task_id}"


def session(digest: str) -> str:
    """STRING (JSON: token name, scope, token digest, created_at) of one dashboard login,
    named by the SHA-256 of the session id the browser holds (a copy of the database
    holds no usable cookie). TTL ``session_ttl_s``; deleted by logout."""
    return f"{PREFIX}session:{digest}"


# ---------------------------------------------------------------- tenants and lanes
# Every message enters through the queue's list (``strategy_queue``); a worker's take
# (``lua/take.lua``) routes what waits there into one list per (lane, tenant) and takes
# from those lists, lanes by weight and tenants round-robin. ``lua/_lanes.lua`` builds
# the same names; docs/queue.md draws the design.

LANES = PREFIX + "lanes"
"""HASH lane -> weight: the lanes an operator set (``strategyq lane set``). The builtin
lanes (``interactive`` 4, ``batch`` 1) exist without a field. No TTL."""


def lane_space(queue: str = QUEUE_NAME) -> str:
    """The prefix of one queue's lanes: ``strategyq:`` for ``strategy_queue``, else
    ``strategyq:q:{queue}:`` (a worker of another queue never takes these tasks)."""
    return PREFIX if queue == QUEUE_NAME else f"{PREFIX}q:{queue}:"


def lane_queue(lane: str, tenant: str, queue: str = QUEUE_NAME) -> str:
    """LIST of ``"<routed at, epoch ms> <raw message>"``: the tenant's tasks waiting in the
    lane, newest on the left. No TTL; empty (so absent) when nothing waits."""
    return f"{lane_space(queue)}lane:{lane}:{tenant}"


def lane_ring(lane: str, queue: str = QUEUE_NAME) -> str:
    """LIST of the tenants with tasks waiting in the lane, each once: the round-robin
    ring (a take serves the head and rotates it to the tail). No TTL."""
    return f"{lane_space(queue)}ring:{lane}"


def lane_depth(queue: str = QUEUE_NAME) -> str:
    """HASH lane -> tasks waiting in the lane (routed). No TTL."""
    return f"{lane_space(queue)}lane_depth"


def lane_credit(queue: str = QUEUE_NAME) -> str:
    """HASH lane -> credit of the smooth weighted round-robin between lanes. No TTL."""
    return f"{lane_space(queue)}lane_credit"


TENANT_QUEUED = PREFIX + "tenant_queued"
"""HASH tenant -> its tasks waiting (in a lane, or admitted by a producer and not yet
routed); a field at 0 is removed. No TTL."""

TENANT_INFLIGHT = PREFIX + "tenant_inflight"
"""HASH tenant -> messages of the tenant in workers' processing lists; a field at 0 is
removed. Rebuilt from the processing lists by each reap, so a crash never leaves it
wrong for longer than one reaper interval. No TTL."""

ADMITTED = PREFIX + "admitted"
"""HASH task id -> ``push`` | ``requeue``: messages in the queue's list whose tenant was
already counted and checked against its quotas (by a producer's push, a requeue or the
reaper); routing removes the field. No TTL."""

TENANTS = PREFIX + "tenants"
"""SET of the tenants that have quotas. No TTL."""

LANE_TENANTS = PREFIX + "lane_tenants"
"""ZSET of ``"<lane>\\t<tenant>"`` pairs with wait-time samples, by their last take (epoch
ms). TTL ``result_ttl_s`` after the last take; a pair whose samples expired is removed by
the next read."""

WAIT_SAMPLES = 256
"""How many recent wait times :func:`waits` keeps per (lane, tenant)."""


def tenant(name: str) -> str:
    """HASH of the tenant's quotas: ``max_in_flight``, ``max_queued``,
    ``max_result_bytes``, ``max_combinations`` (absent: unlimited). No TTL."""
    return f"{PREFIX}tenant:{name}"


def tenant_results(name: str) -> str:
    """ZSET ``"<bytes>:<task id>"`` by the epoch ms its result expires: the tenant's stored
    results, for ``max_result_bytes``. Pruned at each write; TTL ``result_ttl_s``."""
    return f"{PREFIX}tenant_results:{name}"


TENANT_RESULT_BYTES = PREFIX + "tenant_result_bytes"
"""HASH tenant -> bytes of its stored results (the sum over :func:`tenant_results`). No TTL."""


def tenant_combinations(name: str, day: str) -> str:
    """STRING (integer): sweep combinations the tenant fanned out on ``day`` (UTC,
    ``YYYYMMDD``). TTL two days."""
    return f"{PREFIX}tenant_combinations:{name}:{day}"


def waits(lane: str, tenant: str) -> str:
    """LIST of the last :data:`WAIT_SAMPLES` wait times (ms, routed to taken) of the
    tenant's tasks in the lane, newest first. TTL ``result_ttl_s`` after the last take."""
    return f"{PREFIX}waits:{lane}:{tenant}"
