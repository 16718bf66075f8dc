"""Schedules: tasks enqueued on a cron calendar, in a time zone, exactly once per slot.

A schedule is a task template (a task type and its args) with a cron
expression and an IANA time zone, stored in Redis (see :mod:`strategyq.queue.keys`:
``strategyq:schedules``, ``…:paused``, ``…:last``). Every worker (and any
``strategyq scheduler`` process) runs :func:`tick` every few seconds: for each
schedule it finds the latest slot that is due and, in one atomic script
(``schedule_fire.lua``), enqueues it as the task ``NAME:2026-12-01T21:30-05:00``
unless that slot or a later one was enqueued already. So however many of them
race, a slot is enqueued once; after downtime only the latest missed slot
runs (once, not once per missed slot); a paused schedule's slots are skipped.

Cron expressions are evaluated by ``cronsim`` in the schedule's zone: a slot
at a wall-clock time that a DST change skips runs at the first valid minute
after it; one that occurs twice (the autumn change) runs once, the first time.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
import redis
from cronsim import CronSim, CronSimError

from strategyq.errors import ScheduleExists, ScheduleNotFound, TaskValidationError
from strategyq.protocol.results import dumps, utc_now_iso
from strategyq.protocol.task import parse_submitted
from strategyq.queue import keys
from strategyq.queue.scripts import scripts_for
from strategyq.settings import DEFAULT_RESULT_TTL_S, QUEUE_NAME

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


@dataclass(frozen=True)
class Schedule:
    """One schedule: what to enqueue, and when."""

    name: str
    cron: str
    tz: str
    task_type: str
    args: Mapping[str, Any]
    created_at: str

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "name": self.name,
                "cron": self.cron,
                "tz": self.tz,
                "task_type": self.task_type,
                "args": dict(self.args),
                "created_at": self.created_at,
            }
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> Schedule:
        value = orjson.loads(raw)
        return cls(
            name=str(value["name"]),
            cron=str(value["cron"]),
            tz=str(value["tz"]),
            task_type=str(value["task_type"]),
            args=dict(value["args"]),
            created_at=str(value["created_at"]),
        )

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.tz)

    def latest_slot(self, now: datetime) -> datetime:
        """The latest slot at or before ``now`` (a time in the schedule's zone)."""
        # cronsim's reverse iteration yields times strictly before its start: start
        # one minute after now's minute, so a slot at now's minute counts.
        start = now.astimezone(self.zone).replace(second=0, microsecond=0) + timedelta(minutes=1)
        return next(CronSim(self.cron, start, reverse=True))

    def next_slot(self, now: datetime) -> datetime:
        """The first slot after ``now``."""
        return next(CronSim(self.cron, now.astimezone(self.zone)))

    def explain(self) -> str:
        try:
            return str(CronSim(self.cron, datetime.now(self.zone)).explain())
        except Exception:  # explain() is best effort; the expression itself is valid
            return self.cron


def task_id_for(name: str, slot: datetime) -> str:
    """The predictable task id of a slot: ``NAME:2026-12-01T21:30-05:00``."""
    return f"{name}:{slot.isoformat(timespec='minutes')}"


def make_schedule(
    name: str, cron: str, tz: str, task_type: str, args: Mapping[str, Any]
) -> Schedule:
    """Validate a schedule (its name, cron, zone and task) before it is stored.

    Raises:
        TaskValidationError: with what to fix.
    """
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise TaskValidationError(
            f"schedule name {name!r} must be 1-100 letters, digits, '_', '.' or '-', "
            "starting with a letter or digit"
        )
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise TaskValidationError(
            f"unknown time zone {tz!r}; use an IANA name such as 'America/New_York' or 'UTC'"
        ) from None
    try:
        next(CronSim(cron, datetime.now(zone)))
    except (CronSimError, StopIteration) as exc:
        raise TaskValidationError(
            f"cron expression {cron!r} is not valid ({exc}); use five fields "
            "'minute hour day-of-month month day-of-week', e.g. '30 21 * * 1-5'"
        ) from None
    message = {"task_id": f"{name}:check", "task_type": task_type, "args": dict(args)}
    try:
        parse_submitted(message)
    except TaskValidationError as exc:
        raise TaskValidationError(f"schedule {name!r}: {exc}") from None
    return Schedule(name, cron, tz, task_type, dict(args), utc_now_iso())


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def add_schedule(
    client: redis.Redis, schedule: Schedule, *, replace: bool = False, now: datetime | None = None
) -> None:
    """Store ``schedule``; its first run is the first slot after now.

    Raises:
        ScheduleExists: a schedule of that name exists and ``replace`` is false.
    """
    now = now or datetime.now(UTC)
    pipe = client.pipeline(transaction=True)
    if replace:
        pipe.hset(keys.SCHEDULES, schedule.name, schedule.to_json())
    else:
        pipe.hsetnx(keys.SCHEDULES, schedule.name, schedule.to_json())
    # No slot before now runs: the schedule starts from here.
    pipe.hset(keys.SCHEDULES_LAST, schedule.name, int(now.timestamp()))
    added, _ = pipe.execute()
    if not replace and not added:
        raise ScheduleExists(
            f"a schedule named {schedule.name!r} exists; remove it first, replace it, or pick "
            "another name"
        )


def get_schedule(client: redis.Redis, name: str) -> Schedule:
    """The schedule called ``name``.

    Raises:
        ScheduleNotFound: there is none.
    """
    raw = client.hget(keys.SCHEDULES, name)
    if raw is None:
        raise ScheduleNotFound(_missing(name))
    return Schedule.from_json(raw)


def _missing(name: str) -> str:
    return (
        f"no schedule named {name!r}; 'strategyq schedule list' (or GET /v1/schedules) "
        "shows the schedules"
    )


@dataclass(frozen=True)
class ScheduleState:
    schedule: Schedule
    paused: bool
    last_slot: datetime | None
    next_slot: datetime


def _state(
    schedule: Schedule, paused_names: set[str], lasts: Mapping[str, int], now: datetime
) -> ScheduleState:
    seen = lasts.get(schedule.name)
    return ScheduleState(
        schedule=schedule,
        paused=schedule.name in paused_names,
        last_slot=datetime.fromtimestamp(seen, schedule.zone) if seen is not None else None,
        next_slot=schedule.next_slot(now),
    )


def list_schedules(client: redis.Redis, *, now: datetime | None = None) -> list[ScheduleState]:
    """Every schedule with its state, by name."""
    now = now or datetime.now(UTC)
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(keys.SCHEDULES)
    pipe.smembers(keys.SCHEDULES_PAUSED)
    pipe.hgetall(keys.SCHEDULES_LAST)
    specs, paused, last = pipe.execute()
    paused_names = {_text(p) for p in paused}
    lasts = {_text(k): int(_text(v)) for k, v in last.items()}
    out = [_state(Schedule.from_json(raw), paused_names, lasts, now) for raw in specs.values()]
    return sorted(out, key=lambda st: st.schedule.name)


def schedule_state(client: redis.Redis, name: str, *, now: datetime | None = None) -> ScheduleState:
    """One schedule with its state.

    Raises:
        ScheduleNotFound: there is none.
    """
    now = now or datetime.now(UTC)
    pipe = client.pipeline(transaction=False)
    pipe.hget(keys.SCHEDULES, name)
    pipe.sismember(keys.SCHEDULES_PAUSED, name)
    pipe.hget(keys.SCHEDULES_LAST, name)
    raw, paused, last = pipe.execute()
    if raw is None:
        raise ScheduleNotFound(_missing(name))
    lasts = {name: int(_text(last))} if last is not None else {}
    return _state(Schedule.from_json(raw), {name} if paused else set(), lasts, now)


def pause_schedule(client: redis.Redis, name: str) -> None:
    """Skip the schedule's slots until it is resumed."""
    get_schedule(client, name)
    client.sadd(keys.SCHEDULES_PAUSED, name)


def resume_schedule(client: redis.Redis, name: str, *, now: datetime | None = None) -> None:
    """Run the schedule again from its next slot (slots skipped while paused do not run)."""
    get_schedule(client, name)
    now = now or datetime.now(UTC)
    pipe = client.pipeline(transaction=True)
    pipe.hset(keys.SCHEDULES_LAST, name, int(now.timestamp()))
    pipe.srem(keys.SCHEDULES_PAUSED, name)
    pipe.execute()


def remove_schedule(client: redis.Redis, name: str) -> None:
    """Delete the schedule (runs already queued are not touched)."""
    get_schedule(client, name)
    pipe = client.pipeline(transaction=True)
    pipe.hdel(keys.SCHEDULES, name)
    pipe.hdel(keys.SCHEDULES_LAST, name)
    pipe.srem(keys.SCHEDULES_PAUSED, name)
    pipe.execute()


def _message(schedule: Schedule, task_id: str) -> bytes:
    return dumps({"task_id": task_id, "task_type": schedule.task_type, "args": dict(schedule.args)})


def _queued(task_id: str, schedule: Schedule, slot: str | None) -> bytes:
    now = utc_now_iso()
    data = {"task_id": task_id, "queued_at": now, "schedule": schedule.name, "slot": slot}
    return dumps({"status": "queued", "data": data, "updated_at": now})


def run_now(
    client: redis.Redis,
    name: str,
    *,
    now: datetime | None = None,
    queue: str = QUEUE_NAME,
    result_ttl_s: int = DEFAULT_RESULT_TTL_S,
) -> str:
    """Enqueue one run of the schedule now, outside its calendar; returns its task id
    (``NAME:now:2026-12-01T21:31:05Z``)."""
    schedule = get_schedule(client, name)
    now = now or datetime.now(UTC)
    task_id = f"{name}:now:{now.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}"
    pipe = client.pipeline(transaction=True)
    pipe.set(keys.result(task_id), _queued(task_id, schedule, None), ex=result_ttl_s)
    pipe.lpush(queue, _message(schedule, task_id))
    pipe.execute()
    return task_id


class Ticker:
    """Runs :func:`tick` for one client (its fire script is the client's registered one)."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        queue: str = QUEUE_NAME,
        result_ttl_s: int = DEFAULT_RESULT_TTL_S,
    ) -> None:
        self.client = client
        self.queue = queue
        self.result_ttl_s = result_ttl_s
        self._fire = scripts_for(client).schedule_fire

    def tick(self, now: datetime | None = None) -> list[str]:
        """Enqueue every schedule's latest due slot not enqueued yet; returns their task ids."""
        now = now or datetime.now(UTC)
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(keys.SCHEDULES)
        pipe.smembers(keys.SCHEDULES_PAUSED)
        pipe.hgetall(keys.SCHEDULES_LAST)
        specs, paused, last = pipe.execute()
        paused_names = {_text(p) for p in paused}
        lasts = {_text(k): int(_text(v)) for k, v in last.items()}
        queued = []
        for name_raw, raw in specs.items():
            name = _text(name_raw)
            if name in paused_names:
                continue
            try:
                schedule = Schedule.from_json(raw)
                slot = schedule.latest_slot(now)
            except (ValueError, KeyError, CronSimError, ZoneInfoNotFoundError, StopIteration):
                log.warning("schedule %s cannot be evaluated; skipped", name)
                continue
            epoch = int(slot.timestamp())
            if epoch <= lasts.get(name, -1):
                continue
            task_id = task_id_for(name, slot)
            verdict = _text(
                self._fire(
                    keys=[
                        keys.SCHEDULES,
                        keys.SCHEDULES_PAUSED,
                        keys.SCHEDULES_LAST,
                        keys.result(task_id),
                        self.queue,
                    ],
                    args=[
                        name,
                        epoch,
                        _message(schedule, task_id),
                        _queued(task_id, schedule, slot.isoformat(timespec="minutes")),
                        self.result_ttl_s,
                        raw,
                    ],
                )
            )
            if verdict == "queued":
                log.info("schedule %s: queued %s", name, task_id, extra={"task_id": task_id})
                queued.append(task_id)
        return queued


class ScheduleThread(threading.Thread):
    """A daemon thread that ticks every ``interval_s`` until stopped."""

    def __init__(self, ticker: Ticker, interval_s: float) -> None:
        super().__init__(name="schedules", daemon=True)
        self.ticker = ticker
        self.interval_s = interval_s
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.interval_s):
            try:
                self.ticker.tick()
            except redis.RedisError as exc:
                log.warning("schedules: tick failed (%s); retrying next interval", exc)

    def stop(self) -> None:
        self.stopped.set()
