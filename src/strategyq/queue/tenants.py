"""Tenants and lanes: their quotas and weights (set at run time), and what they hold now.

Quotas and lane weights live in Redis, so ``strategyq tenant set``, ``strategyq lane
set`` and ``/v1/tenants`` change them for every worker and producer at once; the
take (``lua/take.lua``) and the producer's push (``lua/push.lua``) read them on each
call. ``docs/queue.md`` explains the scheduling.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import redis

from strategyq.errors import TaskValidationError
from strategyq.protocol.tenancy import BUILTIN_LANES, check_lane, check_tenant
from strategyq.queue import keys
from strategyq.queue.types import text

QUOTAS = ("max_in_flight", "max_queued", "max_result_bytes", "max_combinations")
"""The quotas a tenant may have: tasks running across all workers, tasks waiting,
bytes of results stored, sweep combinations fanned out per UTC day."""


@dataclass(frozen=True)
class LaneState:
    """One lane now."""

    name: str
    weight: int
    depth: int
    tenants_waiting: int
    builtin: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "weight": self.weight,
            "depth": self.depth,
            "tenants_waiting": self.tenants_waiting,
            "builtin": self.builtin,
        }


@dataclass(frozen=True)
class WaitStats:
    """Wait times (routed to taken) of a tenant's last tasks in one lane."""

    samples: int
    p50_s: float
    p95_s: float


@dataclass(frozen=True)
class TenantState:
    """One tenant now: its quotas and what counts against them."""

    name: str
    queued: int
    in_flight: int
    result_bytes: int
    combinations_today: int
    quotas: dict[str, int] = field(default_factory=dict)
    waits: dict[str, WaitStats] = field(default_factory=dict)

    def use(self) -> dict[str, int]:
        """What counts against each quota."""
        return {
            "max_in_flight": self.in_flight,
            "max_queued": self.queued,
            "max_result_bytes": self.result_bytes,
            "max_combinations": self.combinations_today,
        }

    def as_dict(self) -> dict[str, Any]:
        return {
            "tenant": self.name,
            "queued": self.queued,
            "in_flight": self.in_flight,
            "result_bytes": self.result_bytes,
            "combinations_today": self.combinations_today,
            "quotas": self.quotas,
            "wait": {
                lane: {"samples": w.samples, "p50_s": w.p50_s, "p95_s": w.p95_s}
                for lane, w in self.waits.items()
            },
        }


def _percentile(sorted_ms: list[int], q: float) -> float:
    # Nearest-rank: the smallest sample with at least q of the samples at or below it.
    rank = max(math.ceil(q * len(sorted_ms)), 1)
    return sorted_ms[rank - 1] / 1000


def _day() -> str:
    return time.strftime("%Y%m%d", time.gmtime())


class Tenancy:
    """Reads and writes of tenants' quotas and lanes' weights on one client."""

    def __init__(self, client: redis.Redis, queue: str = keys.QUEUE_NAME) -> None:
        self.client = client
        self.queue = queue

    # ------------------------------------------------------------------ writes

    def set_quotas(self, tenant: str, **quotas: int | None) -> dict[str, int]:
        """Set (a number) or remove (``None``, or 0 and below) quotas; the tenant's quotas after.

        Raises:
            TaskValidationError: a bad tenant name or an unknown quota.
        """
        check_tenant(tenant)
        unknown = set(quotas) - set(QUOTAS)
        if unknown:
            raise TaskValidationError(
                f"unknown quota {sorted(unknown)[0]!r}; quotas are {', '.join(QUOTAS)}"
            )
        key = keys.tenant(tenant)
        pipe = self.client.pipeline(transaction=True)
        for name, value in quotas.items():
            if value is None or value <= 0:
                pipe.hdel(key, name)
            else:
                pipe.hset(key, name, int(value))
        pipe.execute()
        now = self.quotas(tenant)
        if now:
            self.client.sadd(keys.TENANTS, tenant)
        else:
            self.client.srem(keys.TENANTS, tenant)
        return now

    def quotas(self, tenant: str) -> dict[str, int]:
        """The tenant's quotas (absent: unlimited)."""
        found = self.client.hgetall(keys.tenant(tenant))
        return {text(k): int(text(v)) for k, v in found.items() if text(k) in QUOTAS}

    def set_lane(self, lane: str, weight: int) -> None:
        """Create a lane, or change its weight (at least 1).

        Raises:
            TaskValidationError: a bad lane name or weight.
        """
        check_lane(lane)
        if weight < 1 or weight > 1000:
            raise TaskValidationError(f"a lane's weight is 1 to 1000, got {weight}")
        self.client.hset(keys.LANES, lane, weight)

    def remove_lane(self, lane: str) -> None:
        """Remove an operator lane (a builtin lane goes back to its default weight).

        Raises:
            TaskValidationError: tasks still wait in it.
        """
        if int(text(self.client.hget(keys.lane_depth(self.queue), lane) or 0)) > 0:
            raise TaskValidationError(
                f"tasks still wait in lane {lane!r}; remove it once they have run"
            )
        self.client.hdel(keys.LANES, lane)

    # ------------------------------------------------------------------ reads

    def lanes(self) -> list[LaneState]:
        """Every lane, heaviest first."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(keys.LANES)
        pipe.hgetall(keys.lane_depth(self.queue))
        weights_raw, depth_raw = pipe.execute()
        weights = dict(BUILTIN_LANES)
        weights.update({text(k): int(text(v)) for k, v in weights_raw.items()})
        depth = {text(k): int(text(v)) for k, v in depth_raw.items()}
        names = sorted(weights, key=lambda n: (-weights[n], n))
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            pipe.llen(keys.lane_ring(name, self.queue))
        rings = pipe.execute()
        return [
            LaneState(n, weights[n], depth.get(n, 0), int(r), n in BUILTIN_LANES)
            for n, r in zip(names, rings, strict=True)
        ]

    def tenants(self) -> list[TenantState]:
        """Every tenant with a quota, tasks waiting or running, results stored or recent
        wait times; busiest first."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(keys.TENANT_QUEUED)
        pipe.hgetall(keys.TENANT_INFLIGHT)
        pipe.hgetall(keys.TENANT_RESULT_BYTES)
        pipe.smembers(keys.TENANTS)
        pipe.zrange(keys.LANE_TENANTS, 0, -1)
        queued_raw, inflight_raw, bytes_raw, with_quotas, pairs_raw = pipe.execute()
        queued = {text(k): int(text(v)) for k, v in queued_raw.items()}
        inflight = {text(k): int(text(v)) for k, v in inflight_raw.items()}
        stored = {text(k): int(text(v)) for k, v in bytes_raw.items()}
        split = (text(p).split("\t", 1) for p in pairs_raw)
        pairs = sorted((s[0], s[1]) for s in split if len(s) == 2)
        names = set(queued) | set(inflight) | set(stored) | {text(t) for t in with_quotas}
        names |= {p[1] for p in pairs}
        ordered = sorted(names)
        day = _day()
        pipe = self.client.pipeline(transaction=False)
        for name in ordered:
            pipe.hgetall(keys.tenant(name))
            pipe.get(keys.tenant_combinations(name, day))
        for lane, name in pairs:
            pipe.lrange(keys.waits(lane, name), 0, -1)
        replies = pipe.execute()
        waits: dict[str, dict[str, WaitStats]] = {}
        gone: list[str] = []
        for pair, samples in zip(pairs, replies[2 * len(ordered) :], strict=True):
            if not samples:
                gone.append("\t".join(pair))
                continue
            ms = sorted(int(text(s)) for s in samples)
            waits.setdefault(pair[1], {})[pair[0]] = WaitStats(
                len(ms), _percentile(ms, 0.5), _percentile(ms, 0.95)
            )
        if gone:
            # Their samples expired: nothing left to show for these pairs.
            self.client.zrem(keys.LANE_TENANTS, *gone)
        states = []
        for i, name in enumerate(ordered):
            quotas_raw, combos = replies[2 * i], replies[2 * i + 1]
            states.append(
                TenantState(
                    name,
                    queued.get(name, 0),
                    inflight.get(name, 0),
                    stored.get(name, 0),
                    int(text(combos or 0)),
                    {text(k): int(text(v)) for k, v in quotas_raw.items() if text(k) in QUOTAS},
                    waits.get(name, {}),
                )
            )
        states.sort(key=lambda t: (-(t.queued + t.in_flight), t.name))
        return states

    def tenant(self, name: str) -> TenantState:
        """One tenant (all zeros when it has nothing)."""
        check_tenant(name)
        for state in self.tenants():
            if state.name == name:
                return state
        return TenantState(name, 0, 0, 0, 0)

    def depth(self) -> int:
        """Tasks waiting in every lane (not counting the queue's list)."""
        return sum(int(text(v)) for v in self.client.hvals(keys.lane_depth(self.queue)))

    def lane_messages(self, per_tenant: int) -> list[bytes]:
        """Up to ``per_tenant`` of the next messages of each tenant of each lane, heaviest
        lane first, each tenant's next one first."""
        lanes = self.lanes()
        pipe = self.client.pipeline(transaction=False)
        for lane in lanes:
            pipe.lrange(keys.lane_ring(lane.name, self.queue), 0, -1)
        rings = pipe.execute()
        pipe = self.client.pipeline(transaction=False)
        for lane, ring in zip(lanes, rings, strict=True):
            for tenant in ring:
                pipe.lrange(keys.lane_queue(lane.name, text(tenant), self.queue), -per_tenant, -1)
        out: list[bytes] = []
        for entries in pipe.execute():
            for entry in reversed(entries):
                data = entry if isinstance(entry, bytes) else str(entry).encode()
                out.append(data.split(b" ", 1)[1] if b" " in data else data)
        return out
