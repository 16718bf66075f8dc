"""What the run archiver reads from Redis: the feed of ended runs, their records.

The archiver only reads. The one write is :func:`switch_on` (and
:func:`switch_off`), the flag that tells the terminal-write scripts to feed the
archive (``lua/_archive.lua``). Everything here is a handful of commands per
batch, so the archiver never costs a worker more than the XADD and SET its
own terminal write already made.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis

from strategyq.protocol.envelope import TaskType
from strategyq.queue import keys
from strategyq.queue.types import text

FLAG = keys.ARCHIVE
"""The key whose presence switches the feed on."""

FEED_CAP = 1_000_000
"""Default length of the feed (``STRATEGYQ_ARCHIVE_FEED_MAX``): how many ended runs Redis
remembers for an archiver that is down (about 100 bytes each)."""


@dataclass(frozen=True)
class FeedEntry:
    """One run that ended, as the feed recorded it."""

    stream_id: str  # "<ms>-<seq>", the feed's own order
    task_id: str
    status: str
    task_type: str
    finished_ms: int

    @property
    def position(self) -> tuple[int, int]:
        ms, _, seq = self.stream_id.partition("-")
        return int(ms), int(seq or 0)


@dataclass(frozen=True)
class RunRecords:
    """What Redis still holds of one run: its result record and its task message (raw)."""

    task_id: str
    result: bytes | None
    task: bytes | None


def switch_on(client: redis.Redis, cap: int = FEED_CAP) -> None:
    """Turn the feed on (idempotent); the terminal writes from now on are fed."""
    client.set(keys.ARCHIVE, int(cap))


def switch_off(client: redis.Redis) -> None:
    """Turn the feed off; the entries already on it stay until read or trimmed."""
    client.delete(keys.ARCHIVE)


def is_on(client: redis.Redis) -> bool:
    return bool(client.exists(keys.ARCHIVE))


def _entry(stream_id: Any, fields: dict[Any, Any]) -> FeedEntry | None:
    values = {text(k): text(v) for k, v in fields.items()}
    try:
        return FeedEntry(
            text(stream_id),
            values["id"],
            values.get("status", ""),
            values.get("type", ""),
            int(values.get("ms") or 0),
        )
    except (KeyError, ValueError):
        return None


def read_feed(
    client: redis.Redis, after: str = "0-0", count: int = 500, block_ms: int | None = None
) -> tuple[list[FeedEntry], list[str]]:
    """Entries after the stream id ``after``, oldest first: (entries, ids of entries that
    are not strategyq's, which the caller logs and steps past).

    With ``block_ms``, waits that long for the first entry when there is none yet.
    """
    rows: Any
    if block_ms is None:
        rows = client.xrange(keys.ARCHIVE_FEED, f"({after}", "+", count=count)
    else:
        reply: Any = client.xread({keys.ARCHIVE_FEED: after}, count=count, block=block_ms)
        rows = reply[0][1] if reply else []
    entries: list[FeedEntry] = []
    foreign: list[str] = []
    for stream_id, fields in rows:
        entry = _entry(stream_id, fields)
        if entry is None:
            foreign.append(text(stream_id))
        else:
            entries.append(entry)
    return entries, foreign


def feed_first(client: redis.Redis) -> str | None:
    """The oldest stream id still on the feed (None: empty); entries before it were trimmed."""
    rows = client.xrange(keys.ARCHIVE_FEED, "-", "+", count=1)
    return text(rows[0][0]) if rows else None


def feed_oldest_after(client: redis.Redis, after: str) -> FeedEntry | None:
    """The first entry after ``after`` (the oldest run not yet archived), for the lag."""
    entries, _ = read_feed(client, after, count=1)
    return entries[0] if entries else None


def run_records(client: redis.Redis, task_ids: list[str]) -> list[RunRecords]:
    """Each run's result record and task message, in one round trip."""
    if not task_ids:
        return []
    names = [k for t in task_ids for k in (keys.result(t), keys.task(t))]
    values = client.mget(names)
    out = []
    for i, task_id in enumerate(task_ids):
        result, task = values[2 * i], values[2 * i + 1]
        out.append(
            RunRecords(
                task_id,
                result.encode() if isinstance(result, str) else result,
                task.encode() if isinstance(task, str) else task,
            )
        )
    return out


def recent_since(
    client: redis.Redis, since_ms: int, offset: int = 0, limit: int = 1000
) -> list[tuple[str, int]]:
    """(task id, finished epoch ms) of the recent-task index from ``since_ms``, oldest first,
    ``limit`` from ``offset`` on (a page): the runs that ended while no feed was on, or
    before the feed was trimmed."""
    rows: Any = client.zrangebyscore(
        keys.RECENT, since_ms, "+inf", start=offset, num=limit, withscores=True
    )
    return [(text(member), int(score)) for member, score in rows]


def recent_types(client: redis.Redis, task_ids: list[str]) -> list[str]:
    """Each task's type as the recent-task indexes by type list it ("" when none does), in
    one round trip: a run that ended while no feed was on has no feed entry to name it."""
    if not task_ids:
        return []
    types = [t.value for t in TaskType]
    pipe = client.pipeline(transaction=False)
    for task_type in types:
        pipe.zmscore(keys.recent_by(task_type=task_type), task_ids)
    replies: Any = pipe.execute()
    return [
        next((t for t, scores in zip(types, replies, strict=True) if scores[i] is not None), "")
        for i in range(len(task_ids))
    ]


def feed_info(client: redis.Redis) -> dict[str, Any]:
    """XINFO STREAM of the feed (its length, first entry, entries ever added)."""
    info: Any = client.xinfo_stream(keys.ARCHIVE_FEED)
    return {text(k): v for k, v in info.items()}
