"""The worker's start-up check of the server's eviction policy and persistence.

The reliability guarantees hold only while Redis keeps what it was given. A
server that evicts keys under memory pressure can drop the queue itself
(``allkeys-*``), or results and records that carry a TTL (``volatile-*``); one
without persistence forgets every queued task on restart. Managed services
often default to an evicting policy (ElastiCache's default parameter group has
``volatile-lru``, under which a server short of memory dropped every finished
result), so the worker reads both settings — ``CONFIG GET`` where allowed, else
``INFO`` — and says plainly what they cost. Every evicting policy with a memory
limit (``allkeys-*`` and ``volatile-*``) is refused unless the operator accepts
it with ``STRATEGYQ_ALLOW_EVICTION=true``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import redis

from strategyq.errors import RedisMisconfigured

log = logging.getLogger(__name__)

FIX_POLICY = (
    "set maxmemory-policy noeviction and give the server memory for the backlog you expect; "
    "AWS ElastiCache: in a custom parameter group attached to the cluster (the default "
    "groups cannot be changed), aws elasticache modify-cache-parameter-group "
    "--cache-parameter-group-name <group> --parameter-name-values "
    "ParameterName=maxmemory-policy,ParameterValue=noeviction; Google Memorystore: gcloud "
    "redis instances update <instance> --region <region> --update-redis-config "
    "maxmemory-policy=noeviction; Azure Cache for Redis: Advanced settings, maxmemory-policy "
    "noeviction (az redis update --name <cache> --resource-group <group> --set "
    "redisConfiguration.maxmemory-policy=noeviction); self-hosted: maxmemory-policy "
    "noeviction in redis.conf"
)


@dataclass(frozen=True)
class ServerConfig:
    """What the server told us about eviction and persistence (None: it would not say)."""

    policy: str | None
    maxmemory: int | None
    aof: bool | None
    rdb_schedule: str | None  # the ``save`` setting; "" is no snapshots


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def read_config(client: redis.Redis) -> ServerConfig:
    """Read the eviction and persistence settings, with CONFIG GET or else INFO."""
    policy = maxmemory = aof = schedule = None
    try:
        conf = {
            _text(k): _text(v)
            for k, v in client.config_get("maxmemory-policy maxmemory appendonly save").items()
        }
        if not conf:  # an older server that takes one pattern per call
            for name in ("maxmemory-policy", "maxmemory", "appendonly", "save"):
                conf.update({_text(k): _text(v) for k, v in client.config_get(name).items()})
        policy = conf.get("maxmemory-policy")
        maxmemory = int(conf["maxmemory"]) if conf.get("maxmemory", "").isdigit() else None
        aof = conf["appendonly"] == "yes" if "appendonly" in conf else None
        schedule = conf.get("save")
    except redis.ResponseError:
        # Managed services rename or forbid CONFIG; INFO still tells most of it.
        try:
            memory = client.info("memory")
            persistence = client.info("persistence")
        except redis.ResponseError:
            return ServerConfig(None, None, None, None)
        policy = memory.get("maxmemory_policy")
        maxmemory = int(memory["maxmemory"]) if "maxmemory" in memory else None
        aof = bool(int(persistence["aof_enabled"])) if "aof_enabled" in persistence else None
    return ServerConfig(policy, maxmemory, aof, schedule)


def problems(config: ServerConfig) -> tuple[list[str], str | None]:
    """(warnings, refusal): what the settings risk, and why to refuse to start (or None)."""
    warnings: list[str] = []
    refusal = None
    policy = config.policy
    if policy is None:
        warnings.append(
            "could not read the server's maxmemory-policy (CONFIG and INFO refused); make sure "
            "it is noeviction, or the server may drop queued tasks when memory runs out"
        )
    elif policy.startswith("allkeys-"):
        text = (
            f"the server's maxmemory-policy is {policy}: when memory runs out it evicts any key, "
            "the task queue and the workers' processing lists included, and tasks vanish "
            f"without an error; {FIX_POLICY}"
        )
        if config.maxmemory == 0:
            warnings.append(text + " (no maxmemory is set, so nothing is evicted today)")
        else:
            refusal = text
    elif policy.startswith("volatile-"):
        text = (
            f"the server's maxmemory-policy is {policy}: when memory runs out it evicts keys "
            "that have a TTL, so finished results vanish before anyone (or the run archive) "
            "reads them, and running/queued records and worker heartbeats go early (the queue, "
            f"processing lists and fencing tokens have no TTL and stay); {FIX_POLICY}"
        )
        if config.maxmemory == 0:
            warnings.append(text + " (no maxmemory is set, so nothing is evicted today)")
        else:
            refusal = text
    if config.aof is False:
        if config.rdb_schedule:
            warnings.append(
                "the server runs without AOF, with RDB snapshots only "
                f"(save {config.rdb_schedule!r}): a crash loses every task queued or finished "
                "since the last snapshot; set appendonly yes and appendfsync everysec"
            )
        elif config.rdb_schedule == "":
            warnings.append(
                "the server has no persistence (appendonly no, no save schedule): a restart "
                "loses every queued task and every result; set appendonly yes and "
                "appendfsync everysec"
            )
        else:
            warnings.append(
                "the server runs without AOF (and its snapshot schedule cannot be read): a "
                "restart may lose queued tasks and results; set appendonly yes and "
                "appendfsync everysec"
            )
    return warnings, refusal


def check_server(client: redis.Redis, *, allow_eviction: bool) -> ServerConfig:
    """Log what the server's settings risk; refuse an evicting policy unless allowed.

    Raises:
        RedisMisconfigured: an evicting policy (``allkeys-*``, ``volatile-*``) with a
            memory limit, and ``allow_eviction`` is false.
    """
    config = read_config(client)
    warnings, refusal = problems(config)
    for text in warnings:
        log.warning("REDIS SETTINGS: %s", text)
    if refusal is not None:
        if not allow_eviction:
            raise RedisMisconfigured(
                f"refusing to take tasks: {refusal}; or start the worker with "
                "STRATEGYQ_ALLOW_EVICTION=true to accept losing tasks and results"
            )
        log.warning("REDIS SETTINGS (accepted by STRATEGYQ_ALLOW_EVICTION): %s", refusal)
    return config
