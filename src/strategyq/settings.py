"""Settings: built from the environment once, then passed explicitly.

Every knob has a default here and an environment variable; units are in the
names (``_s`` seconds, ``_mb`` mebibytes, ``_bytes``).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import orjson

from strategyq.errors import ConfigError

QUEUE_NAME = "strategy_queue"
DEFAULT_RESULT_TTL_S = 86_400
"""How long a result is kept, seconds (``STRATEGYQ_RESULT_TTL``): one day."""
DEFAULT_METRICS_PORT = 9100
"""The worker's ``/metrics``, ``/healthz`` and ``/readyz`` port (``STRATEGYQ_METRICS_PORT``)."""
"""The list producers LPUSH tasks onto (frozen by the wire format)."""


def _env_int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(
            f"{name}={raw!r} is not a whole number; set it to e.g. {default}"
        ) from None
    if value < minimum:
        raise ConfigError(f"{name}={value} is below the minimum {minimum}")
    return value


def _env_float(env: Mapping[str, str], name: str, default: float, minimum: float = 0.0) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number; set it to e.g. {default}") from None
    if value < minimum:
        raise ConfigError(f"{name}={value} is below the minimum {minimum}")
    return value


def _env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean; use true or false")


def _env_cache_mb(env: Mapping[str, str]) -> int:
    # "auto" (the default) sizes the frame cache to the machine's available memory.
    if env.get("STRATEGYQ_DATA_CACHE_MB", "").strip().lower() in {"", "auto"}:
        from strategyq.data.cache import auto_cache_mb

        return auto_cache_mb()
    return _env_int(env, "STRATEGYQ_DATA_CACHE_MB", 1024)


def default_home(env: Mapping[str, str] | None = None) -> Path:
    """``$STRATEGYQ_HOME``, else ``$XDG_DATA_HOME/strategyq``, else ``~/.local/share/strategyq``."""
    env = os.environ if env is None else env
    if env.get("STRATEGYQ_HOME"):
        return Path(env["STRATEGYQ_HOME"]).expanduser()
    if env.get("XDG_DATA_HOME"):
        return Path(env["XDG_DATA_HOME"]).expanduser() / "strategyq"
    return Path("~/.local/share/strategyq").expanduser()


SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
DEFAULT_SENTINEL_PORT = 26379
DEFAULT_SENTINEL_MASTER = "mymaster"


def parse_sentinels(raw: str, what: str = "REDIS_SENTINELS") -> tuple[tuple[str, int], ...]:
    """``host[:port],host[:port],…`` (IPv6 in brackets) as (host, port) pairs."""
    nodes: list[tuple[str, int]] = []
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        if item.startswith("["):
            host, _, rest = item[1:].partition("]")
            port_text = rest.removeprefix(":")
        elif item.count(":") == 1:
            host, _, port_text = item.partition(":")
        else:
            host, port_text = item, ""
        try:
            port = int(port_text) if port_text else DEFAULT_SENTINEL_PORT
        except ValueError:
            raise ConfigError(
                f"{what}: {item!r} is not host:port; list the sentinels as "
                "host1:26379,host2:26379,host3:26379"
            ) from None
        if not host or not 0 < port < 65536:
            raise ConfigError(
                f"{what}: {item!r} is not host:port; list the sentinels as "
                "host1:26379,host2:26379,host3:26379"
            )
        nodes.append((host, port))
    if not nodes:
        raise ConfigError(f"{what} names no sentinel; list them as host1:26379,host2:26379")
    return tuple(nodes)


@dataclass(frozen=True)
class RedisSettings:
    """Where the Redis/Valkey server is and how to log in.

    ``url`` wins when set (``redis://``, ``rediss://``, ``unix://``, or
    ``redis+sentinel://host1:26379,host2:26379/<master>/<db>``). Else
    ``sentinels`` (``REDIS_SENTINELS``) with ``sentinel_master`` name a primary
    that Sentinel watches; else ``host``. With none of them, ``embedded`` is
    true: the CLI starts or reuses the private Valkey server under
    ``STRATEGYQ_HOME``.
    """

    url: str | None = None
    host: str | None = None
    port: int = 6379
    password: str | None = field(default=None, repr=False)
    username: str | None = None
    db: int = 0
    ssl: bool = False
    ssl_ca_certs: str | None = None
    socket_timeout_s: float = 10.0
    sentinels: tuple[tuple[str, int], ...] = ()
    sentinel_master: str = DEFAULT_SENTINEL_MASTER
    sentinel_password: str | None = field(default=None, repr=False)

    @property
    def embedded(self) -> bool:
        return self.url is None and self.host is None and not self.sentinels

    @property
    def uses_sentinel(self) -> bool:
        """True when the primary is found through Sentinel (a url or REDIS_SENTINELS)."""
        if self.url:
            return self.url.partition("://")[0].lower() in SENTINEL_SCHEMES
        return bool(self.sentinels)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RedisSettings:
        env = os.environ if env is None else env
        return cls(
            url=env.get("REDIS_URL") or None,
            host=env.get("REDIS_HOST") or None,
            port=_env_int(env, "REDIS_PORT", 6379, minimum=1),
            password=env.get("REDIS_PASSWORD") or None,
            username=env.get("REDIS_USERNAME") or None,
            db=_env_int(env, "REDIS_DB", 0),
            ssl=_env_bool(env, "REDIS_SSL", False),
            ssl_ca_certs=env.get("REDIS_SSL_CA_CERTS") or None,
            socket_timeout_s=_env_float(env, "REDIS_SOCKET_TIMEOUT", 10.0, minimum=0.1),
            sentinels=parse_sentinels(env["REDIS_SENTINELS"])
            if (env.get("REDIS_SENTINELS") or "").strip()
            else (),
            sentinel_master=env.get("REDIS_SENTINEL_MASTER") or DEFAULT_SENTINEL_MASTER,
            sentinel_password=env.get("REDIS_SENTINEL_PASSWORD") or None,
        )

    def describe(self) -> str:
        """Where we connect, without credentials (safe for logs and errors)."""
        if self.url:
            scheme, _, rest = self.url.partition("://")
            return f"{scheme}://{rest.rpartition('@')[2]}"
        if self.sentinels:
            nodes = ",".join(f"{h}:{p}" for h, p in self.sentinels)
            scheme = "rediss+sentinel" if self.ssl else "redis+sentinel"
            return f"{scheme}://{nodes}/{self.sentinel_master}/{self.db}"
        if self.host:
            return f"{'rediss' if self.ssl else 'redis'}://{self.host}:{self.port}/{self.db}"
        return "embedded Valkey"


@dataclass(frozen=True)
class SandboxLimits:
    """Per-run limits of the strategy sandbox; tasks may lower them, never raise them.

    ``answer_max_bytes`` caps what a sandbox child may send back (its raw
    answer, ``STRATEGYQ_ANSWER_MAX_BYTES``); the stored result the engine makes
    from it is capped separately by ``Settings.max_result_bytes``.
    """

    time_limit_s: float = 60.0
    memory_mb: int = 2048
    answer_max_bytes: int = 32 * 1024 * 1024
    max_open_files: int = 64

    def capped(
        self, *, time_limit_s: float | None = None, memory_mb: int | None = None
    ) -> SandboxLimits:
        """Per-task overrides, never beyond this object's values."""
        return replace(
            self,
            time_limit_s=min(self.time_limit_s, time_limit_s)
            if time_limit_s
            else self.time_limit_s,
            memory_mb=min(self.memory_mb, memory_mb) if memory_mb else self.memory_mb,
        )


@dataclass(frozen=True)
class Settings:
    """Everything a strategyq process needs to know, read once from the environment."""

    home: Path
    redis: RedisSettings
    queue_name: str = QUEUE_NAME
    result_ttl_s: int = DEFAULT_RESULT_TTL_S
    worker_id: str = ""
    concurrency: int = 1
    heartbeat_interval_s: float = 2.0
    heartbeat_timeout_s: float = 10.0
    reaper_interval_s: float = 3.0
    max_attempts: int = 3
    executor_margin_s: float = 30.0
    allow_eviction: bool = False
    grace_period_s: float = 25.0
    max_task_bytes: int = 1024 * 1024
    max_message_bytes: int = 64 * 1024 * 1024
    max_result_bytes: int = 16 * 1024 * 1024
    max_instances: int = 10_000
    max_symbols: int = 5_000
    max_screening_limit: int = 10_000
    data_cache_mb: int = 1024
    metrics_port: int = DEFAULT_METRICS_PORT
    metrics_host: str = "127.0.0.1"
    recent_max: int = 10_000
    insecure_no_sandbox: bool = False
    schedule_interval_s: float = 5.0
    sweep_max_combinations: int = 10_000
    sweep_chunk_size: int = 25
    sweep_max_results: int = 10_000
    sandbox: SandboxLimits = field(default_factory=SandboxLimits)

    @property
    def data_dir(self) -> Path:
        """The market data store."""
        return self.home / "data"

    @property
    def server_dir(self) -> Path:
        """The embedded Valkey server's directory (socket, AOF, pid, log)."""
        return self.home / "valkey"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        env = os.environ if env is None else env
        heartbeat_timeout = _env_float(env, "STRATEGYQ_HEARTBEAT_TIMEOUT", 10.0, minimum=0.5)
        heartbeat_interval = _env_float(
            env, "STRATEGYQ_HEARTBEAT_INTERVAL", min(2.0, heartbeat_timeout / 3), minimum=0.05
        )
        if heartbeat_interval * 3 > heartbeat_timeout:
            raise ConfigError(
                "STRATEGYQ_HEARTBEAT_INTERVAL must be at most a third of "
                "STRATEGYQ_HEARTBEAT_TIMEOUT "
                f"(got {heartbeat_interval} and {heartbeat_timeout}), or a busy worker looks dead"
            )
        settings = cls(
            home=default_home(env),
            redis=RedisSettings.from_env(env),
            queue_name=env.get("STRATEGYQ_QUEUE") or QUEUE_NAME,
            result_ttl_s=_env_int(env, "STRATEGYQ_RESULT_TTL", DEFAULT_RESULT_TTL_S, minimum=1),
            worker_id=env.get("STRATEGYQ_WORKER_ID") or env.get("HOSTNAME") or socket.gethostname(),
            concurrency=_env_int(env, "STRATEGYQ_CONCURRENCY", 1, minimum=1),
            heartbeat_interval_s=heartbeat_interval,
            heartbeat_timeout_s=heartbeat_timeout,
            reaper_interval_s=_env_float(env, "STRATEGYQ_REAPER_INTERVAL", 3.0, minimum=0.05),
            max_attempts=_env_int(env, "STRATEGYQ_MAX_ATTEMPTS", 3, minimum=1),
            executor_margin_s=_env_float(env, "STRATEGYQ_EXECUTOR_MARGIN", 30.0, minimum=0.5),
            allow_eviction=_env_bool(env, "STRATEGYQ_ALLOW_EVICTION", False),
            grace_period_s=_env_float(env, "STRATEGYQ_GRACE_PERIOD", 25.0),
            max_task_bytes=_env_int(env, "STRATEGYQ_MAX_TASK_BYTES", 1024 * 1024, minimum=1024),
            max_message_bytes=_env_int(
                env, "STRATEGYQ_MAX_MESSAGE_BYTES", 64 * 1024 * 1024, minimum=1024
            ),
            max_result_bytes=_env_int(
                env, "STRATEGYQ_MAX_RESULT_BYTES", 16 * 1024 * 1024, minimum=64 * 1024
            ),
            max_instances=_env_int(env, "STRATEGYQ_MAX_INSTANCES", 10_000, minimum=1),
            data_cache_mb=_env_cache_mb(env),
            metrics_port=_env_int(env, "STRATEGYQ_METRICS_PORT", DEFAULT_METRICS_PORT),
            metrics_host=env.get("STRATEGYQ_METRICS_HOST") or "127.0.0.1",
            recent_max=_env_int(env, "STRATEGYQ_RECENT_MAX", 10_000, minimum=1),
            insecure_no_sandbox=_env_bool(env, "STRATEGYQ_INSECURE_NO_SANDBOX", False),
            schedule_interval_s=_env_float(env, "STRATEGYQ_SCHEDULE_INTERVAL", 5.0),
            sweep_max_combinations=_env_int(
                env, "STRATEGYQ_SWEEP_MAX_COMBINATIONS", 10_000, minimum=1
            ),
            sweep_chunk_size=_env_int(env, "STRATEGYQ_SWEEP_CHUNK_SIZE", 25, minimum=1),
            sweep_max_results=_env_int(env, "STRATEGYQ_SWEEP_MAX_RESULTS", 10_000, minimum=1),
            sandbox=SandboxLimits(
                time_limit_s=_env_float(env, "STRATEGYQ_TIME_LIMIT", 60.0, minimum=0.1),
                memory_mb=_env_int(env, "STRATEGYQ_MEMORY_MB", 2048, minimum=64),
                answer_max_bytes=_env_int(
                    env, "STRATEGYQ_ANSWER_MAX_BYTES", 32 * 1024 * 1024, minimum=1024
                ),
            ),
        )
        return replace(settings, **overrides) if overrides else settings

    def for_child_process(self) -> bytes:
        """These settings as JSON for the executor and the sandbox host, without credentials.

        Those processes run with an environment stripped of everything but
        ``PATH``-like variables, so they are handed the worker's settings instead
        of reading their own (which would silently be the defaults).
        """
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values["home"] = str(self.home)
        values["sandbox"] = asdict(self.sandbox)
        del values["redis"]
        return orjson.dumps(values)

    @classmethod
    def from_child_json(cls, data: bytes | str) -> Settings:
        """Settings handed over by :meth:`for_child_process` (no Redis: the child has none)."""
        values = orjson.loads(data)
        values["home"] = Path(values["home"])
        values["sandbox"] = SandboxLimits(**values["sandbox"])
        return cls(redis=RedisSettings(), **values)
