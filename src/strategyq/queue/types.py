"""Typed replies of the queue's transitions, and the names of stop reasons."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class StopReason(StrEnum):
    """Why a worker asked a running task to stop."""

    CANCELLED = "cancelled"  # a client cancelled it: it ends ``cancelled``
    SHUTDOWN = "shutdown"  # the worker is stopping: it goes back to the queue


class ClaimVerdict(StrEnum):
    RUN = "run"  # a new run started: it holds ``token``
    SKIP = "skip"  # the task already has a terminal result
    CANCELLED = "cancelled"  # a client cancelled it before it started
    DUPLICATE = "duplicate"  # another task with this id is running or has finished
    FORGED = "forged"  # a sweep_chunk message its sweep's fan-out did not queue


class FinishVerdict(StrEnum):
    WRITTEN = "written"  # this run's result is the task's result
    STALE = "stale"  # another run took over (this run's token is no longer current)
    ALREADY = "already"  # the task already had a terminal result
    MISSING = "missing"  # written, but the run's token was gone (evicted, or a failover)


@dataclass(frozen=True)
class Claim:
    """The reply of ``claim.lua``."""

    verdict: ClaimVerdict
    token: str = ""
    attempt: int = 0
    status: str = ""  # the status found, when skipped or a duplicate
    submitted_at: str | None = None  # when the task was first queued, when its record said

    @classmethod
    def from_reply(cls, reply: list[Any]) -> Claim:
        verdict = ClaimVerdict(text(reply[0]))
        if verdict is ClaimVerdict.RUN:
            submitted = text(reply[3]) if len(reply) > 3 and reply[3] else None
            return cls(verdict, token=text(reply[1]), attempt=int(reply[2]), submitted_at=submitted)
        if verdict in (ClaimVerdict.SKIP, ClaimVerdict.DUPLICATE, ClaimVerdict.FORGED):
            return cls(verdict, status=text(reply[1]))
        return cls(verdict)


@dataclass(frozen=True)
class Taken:
    """The reply of ``take.lua``: a message now in the worker's processing list.

    ``refusal`` is empty for a message to run; else it was not queued (``quota``: its
    tenant is over ``quota``; ``unknown_lane``: ``quota`` holds the lane it named;
    ``malformed``: its tenant or priority is unusable) and gets an error result.
    """

    raw: bytes
    tenant: str
    lane: str = ""
    wait_ms: int = 0
    refusal: str = ""
    quota: str = ""
    limit: int = 0
    used: int = 0
    result_cap: int | None = None  # the tenant's max_result_bytes, when it has one

    @classmethod
    def from_reply(cls, reply: list[Any]) -> Taken:
        raw = reply[0] if isinstance(reply[0], bytes) else str(reply[0]).encode()
        refusal = text(reply[1])
        if not refusal:
            cap = text(reply[5])
            return cls(
                raw,
                text(reply[2]),
                text(reply[3]),
                int(reply[4]),
                result_cap=int(cap) if cap else None,
            )
        return cls(
            raw,
            text(reply[2]),
            refusal=refusal,
            quota=text(reply[3]),
            limit=int(reply[4]),
            used=int(reply[5]),
        )


@dataclass(frozen=True)
class Reaped:
    """What the reaper did with one dead worker's processing list."""

    requeued: int
    dead_lettered: int
    alive: bool = False  # the worker's heartbeat was there after all: nothing done


@dataclass(frozen=True)
class RecentTask:
    """One entry of the recent-task index."""

    task_id: str
    finished_at_ms: int
    result: dict[str, Any] | None = None


def text(value: Any) -> str:
    """A Redis reply as ``str`` (clients with and without ``decode_responses``)."""
    return value.decode() if isinstance(value, bytes) else str(value)
