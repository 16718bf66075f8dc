"""The archiver: copies every run that ends into the archive, off the workers' path.

It follows the feed (``strategyq:archive:feed``, appended by each terminal write
while the archive is on) from the cursor it keeps in the archive database, and
fills in from the recent-task index what the feed does not hold (runs that ended
before the archive was switched on, or after the feed was trimmed). Each batch's
rows and the cursor move in one transaction, so killing the archiver at any
moment loses nothing Redis still holds, and rows are keyed by task id, so a run
is written once however many archivers race.

The archiver never writes Redis, except the flag that switches the feed on.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass

import redis

from strategyq.archive.db import Database, describe
from strategyq.archive.metrics import ArchiveMetrics
from strategyq.archive.record import ArchivedRun, NotARun, build
from strategyq.archive.store import Archive, now_ms
from strategyq.errors import ArchiveUnavailable
from strategyq.queue import archive_feed as feed
from strategyq.queue.archive_feed import FeedEntry

log = logging.getLogger(__name__)

BACKOFF_FIRST_S = 0.5
BACKOFF_MAX_S = 30.0
FLAG_CHECK_S = 5.0


@dataclass(frozen=True)
class ArchiverConfig:
    """How the archiver runs (from :class:`~strategyq.settings.Settings`)."""

    url: str
    result_ttl_s: int = 86400
    feed_max: int = feed.FEED_CAP
    batch: int = 500
    retention_days: float = 0.0
    retention_runs: int = 0
    prune_interval_s: float = 300.0
    block_ms: int = 1000
    linger_s: float = 0.5
    """After a batch smaller than ``batch``, wait this long for more runs to gather: a
    transaction per half second rather than per run, for at most this much more lag."""


class Archiver:
    """One archiver process's loop (``strategyq archive``, or a thread of ``strategyq serve``).

    Args:
        client: a redis-py client (its socket timeout must exceed ``block_ms``).
        config: where the archive is and how to run.
        metrics: where to count (a private registry when omitted).
    """

    def __init__(
        self,
        client: redis.Redis,
        config: ArchiverConfig,
        metrics: ArchiveMetrics | None = None,
    ) -> None:
        self.client = client
        self.config = config
        self.metrics = metrics or ArchiveMetrics()
        self.db = Database(config.url)
        self.archive: Archive | None = None
        self.cursor = "0-0"
        self.ready = False
        self.caught_up = 0
        self.stop_event = threading.Event()
        self._backoff = BACKOFF_FIRST_S
        self._flag_checked = time.monotonic()
        self._last_read = 0

    # ------------------------------------------------------------------ running

    def run(self) -> None:
        """Archive until :meth:`stop`; a database outage is waited out with backoff."""
        feed.switch_on(self.client, self.config.feed_max)
        pruner = threading.Thread(target=self._prune_loop, name="archive-retention", daemon=True)
        pruner.start()
        while not self.stop_event.is_set():
            try:
                if self.archive is None:
                    self._start()
                self._keep_feed_on()
                self.step(self.config.block_ms)
                self._backoff = BACKOFF_FIRST_S
                if 0 < self._last_read < self.config.batch:
                    self.stop_event.wait(self.config.linger_s)
            except ArchiveUnavailable as exc:
                self._down(exc)
                # The lag keeps growing while the database is down (the alert's input).
                with contextlib.suppress(redis.RedisError):
                    self._update_lag()
            except redis.RedisError as exc:
                self.metrics.set_redis_up(False)
                log.warning("archiver: Redis failed (%s); retrying in %.1f s", exc, self._backoff)
                self._wait()
        self.db.close()

    def stop(self) -> None:
        self.stop_event.set()

    def _keep_feed_on(self) -> None:
        """Put the feed's flag back if it went (a FLUSHDB, a failover to a replica that
        missed it), and copy from the recent-task index the runs that ended unfed."""
        now = time.monotonic()
        if now < self._flag_checked + FLAG_CHECK_S:
            return
        self._flag_checked = now
        if feed.is_on(self.client):
            return
        log.warning(
            "archiver: the archive flag %s was gone from Redis; runs that ended meanwhile "
            "were not fed: switching it on and copying them from the recent-task index",
            feed.FLAG,
        )
        feed.switch_on(self.client, self.config.feed_max)
        self.catch_up_from_index()

    def _down(self, exc: Exception) -> None:
        self.ready = False
        self.metrics.set_db_up(False)
        log.warning(
            "archiver: %s; nothing is lost while Redis holds the results, retrying in %.1f s",
            exc,
            self._backoff,
        )
        self._wait()

    def _wait(self) -> None:
        self.stop_event.wait(self._backoff)
        self._backoff = min(self._backoff * 2, BACKOFF_MAX_S)

    def _start(self) -> None:
        """Open the archive (migrating it), find the cursor, and fill any gap."""
        archive = Archive(self.db)
        self.cursor = archive.cursor()
        self.archive = archive
        self.metrics.set_db_up(True)
        first = feed.feed_first(self.client)
        if self.cursor != "0-0" and first is not None and _pos(first) > _pos(self.cursor):
            trimmed = feed.feed_info(self.client)
            log.warning(
                "archiver: the feed was trimmed past the archive's cursor %s (its oldest entry is "
                "%s; %s entries were ever added): runs that ended in between were dropped from it "
                "before they were archived; recovering those the recent-task index still lists. "
                "Raise STRATEGYQ_ARCHIVE_FEED_MAX so an outage this long is covered",
                self.cursor,
                first,
                trimmed.get("entries-added", "?"),
            )
        self.caught_up = self.catch_up_from_index()
        self.ready = True
        log.info(
            "archiver: archiving into %s from feed position %s", describe(self.db.url), self.cursor
        )

    # ------------------------------------------------------------------ one batch

    def step(self, block_ms: int | None = None) -> int:
        """Archive one batch from the feed; how many runs were new."""
        assert self.archive is not None
        entries, foreign = feed.read_feed(
            self.client, self.cursor, self.config.batch, block_ms if block_ms else None
        )
        self._last_read = len(entries) + len(foreign)
        self.metrics.set_redis_up(True)
        for stream_id in foreign:
            log.warning(
                "archiver: skipping feed entry %s: not a strategyq entry (no id)", stream_id
            )
            self.metrics.skipped()
        last = foreign[-1] if foreign and not entries else None
        if entries:
            last_entry = max([e.stream_id for e in entries] + foreign, key=_pos)
            written = self._copy(entries, cursor=last_entry)
        else:
            written = 0
            if last is not None:
                self.archive.write([], cursor=_pos(last))
                self.cursor = last
        self._update_lag()
        return written

    def _copy(self, entries: list[FeedEntry], *, cursor: str) -> int:
        assert self.archive is not None
        records = feed.run_records(self.client, [e.task_id for e in entries])
        runs: list[ArchivedRun] = []
        missed: list[tuple[str, str, int | None]] = []
        now = now_ms()
        for entry, rec in zip(entries, records, strict=True):
            if rec.result is None:
                young = now - entry.finished_ms < self.config.result_ttl_s * 1000
                reason = "evicted" if young else "expired"
                log.warning(
                    "archiver: run %s (ended %s) was %s from Redis before it was archived",
                    entry.task_id,
                    _when(entry.finished_ms),
                    "evicted" if young else "expired (the archive was down past the result TTL)",
                )
                missed.append((entry.task_id, reason, entry.finished_ms))
                continue
            try:
                runs.append(
                    build(
                        entry.task_id,
                        rec.result,
                        rec.task,
                        finished_ms=entry.finished_ms,
                        task_type=entry.task_type,
                    )
                )
            except NotARun as exc:
                log.warning("archiver: skipping task_result:%s: %s", entry.task_id, exc)
                self.metrics.skipped()
        written = self.archive.write(runs, cursor=_pos(cursor), missed=missed)
        self.cursor = cursor
        self.metrics.rows_written(written)
        for _, reason, _ in missed:
            self.metrics.missed(reason)
        return written

    def catch_up_from_index(self) -> int:
        """Archive what the recent-task index lists and the archive lacks; how many."""
        assert self.archive is not None
        since = 0
        if self.config.retention_days > 0:
            since = now_ms() - int(self.config.retention_days * 86_400_000)
        if self.config.retention_runs > 0 and self.archive.count() >= self.config.retention_runs:
            since = max(since, self.archive.oldest_kept_ms() or 0)
        total = 0
        seen: set[str] = set()
        while True:
            # Paged by score (an offset would shift as the index is trimmed at its head), so
            # an index of any length (STRATEGYQ_RECENT_MAX) is read whole; the entries at the
            # boundary score are read twice and the second time skipped.
            page = feed.recent_since(self.client, since, 0, self.config.batch)
            part = [(t, ms) for t, ms in page if t not in seen]
            if not part:
                if len(page) < self.config.batch:
                    break
                since = page[-1][1] + 1  # a whole page of one millisecond: step past it
                continue
            seen.update(t for t, _ in part)
            since = part[-1][1]
            have = self.archive.existing([t for t, _ in part])
            todo = [(t, ms) for t, ms in part if t not in have]
            records = feed.run_records(self.client, [t for t, _ in todo])
            kinds = feed.recent_types(self.client, [t for t, _ in todo])
            runs = []
            for (task_id, ms), rec, kind in zip(todo, records, kinds, strict=True):
                if rec.result is None:
                    continue  # expired since it was listed: not a loss the feed saw
                try:
                    runs.append(
                        build(task_id, rec.result, rec.task, finished_ms=ms, task_type=kind)
                    )
                except NotARun as exc:
                    log.warning("archiver: skipping task_result:%s: %s", task_id, exc)
                    self.metrics.skipped()
            written = self.archive.write(runs)
            self.metrics.rows_written(written)
            total += written
        if total:
            log.info("archiver: %s runs copied from the recent-task index", total)
        return total

    def _update_lag(self) -> None:
        oldest = feed.feed_oldest_after(self.client, self.cursor)
        self.metrics.set_lag(0.0 if oldest is None else (now_ms() - oldest.finished_ms) / 1000)

    # ------------------------------------------------------------------ retention

    def _prune_loop(self) -> None:
        if self.config.retention_days <= 0 and self.config.retention_runs <= 0:
            return
        db = Database(self.config.url)
        try:
            while not self.stop_event.wait(self.config.prune_interval_s if self.ready else 1.0):
                if not self.ready:
                    continue
                try:
                    deleted = Archive(db, migrate_schema=False).prune(
                        max_age_days=self.config.retention_days,
                        max_runs=self.config.retention_runs,
                    )
                except ArchiveUnavailable as exc:
                    log.warning("archive retention: %s; trying again later", exc)
                    continue
                if deleted:
                    self.metrics.pruned(deleted)
                    log.info("archive retention: deleted %s runs", deleted)
        finally:
            db.close()


def _pos(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


def _when(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))
