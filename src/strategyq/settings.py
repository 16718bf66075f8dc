"""Settings: one table of every knob, built from the environment once, then passed explicitly.

Each setting is one field of :class:`Settings` (or of :class:`RedisSettings`,
:class:`SandboxLimits`, :class:`strategyq.api.config.ApiConfig`) declared with
:func:`setting`: its name and type are the field's, and the call gives its
default, its environment variable, its one-line help, and when needed its
minimum, unit or a parser. :data:`SETTINGS` is that table, read from the
fields in order; ``from_env`` builds each object from it, the README's
configuration table is generated from it (``python -m tools.settings_table``;
``tests/unit/test_settings_table.py`` checks the README and ``docs/api.md``),
and so is the help of the CLI options that override a setting.

Units are in the names (``_s`` seconds, ``_mb`` mebibytes, ``_bytes``), and
the table's unit column follows them.

Adding a setting is one entry, for example in :class:`Settings`::

    pid_cap: int = setting(64, "STRATEGYQ_PID_CAP", "processes a strategy may run", minimum=1)

then ``python -m tools.settings_table`` rewrites the tables of the README and
``docs/api.md``. A field declared without :func:`setting` has no environment
variable (it is a fixed limit, or set by code).
"""

from __future__ import annotations

import os
import socket
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING, Field, asdict, dataclass, field, fields, is_dataclass, replace
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
DEFAULT_RESULT_TTL_S = 86_400
"""How long a result is kept, seconds (``STRATEGYQ_RESULT_TTL``): one day."""
DEFAULT_METRICS_PORT = 9100
"""The worker's ``/metrics``, ``/healthz`` and ``/readyz`` port (``STRATEGYQ_METRICS_PORT``)."""

MIB = 1024 * 1024
UNITS = {"_s": "s", "_mb": "MiB", "_bytes": "bytes"}
"""A field name's suffix -> the unit shown in the table."""


@dataclass(frozen=True)
class Setting:
    """One environment variable and the field it sets.

    Attributes:
        env: the environment variable.
        help: one line for the README and ``--help`` (Markdown code spans allowed).
        minimum: the smallest value accepted (numbers; 0 unless given).
        unit: shown in the table (default: from the field name's suffix).
        shown: the default as the table shows it, when the field's own default is not
            what a reader needs (e.g. computed at start-up).
        parse: turns the variable's text into the value, for types other than
            ``str``, ``int``, ``float``, ``bool`` and ``Path``; raises ConfigError.
        fallback: the value when the variable is unset, from the environment and the
            other resolved values, when it is not the field's default.
        name: the field (dotted for nested objects: ``sandbox.memory_mb``); set by
            :func:`table`.
        kind: the field's type; set by :func:`table`.
        default: the field's default; set by :func:`table`.
    """

    env: str
    help: str
    minimum: float | None = None
    unit: str | None = None
    shown: str | None = None
    parse: Callable[[str], Any] | None = None
    fallback: Callable[[Mapping[str, str], Mapping[str, Any]], Any] | None = None
    name: str = ""
    kind: Any = None
    default: Any = None

    def read(self, env: Mapping[str, str]) -> Any:
        """The variable's value, typed and checked; :data:`UNSET` when it is not set.

        Raises:
            ConfigError: the value is not of the setting's type or is below its minimum.
        """
        raw = env.get(self.env)
        if raw is None or raw.strip() == "":
            return UNSET
        if self.parse is not None:
            return self.parse(raw)
        kind = _base(self.kind)
        if kind is bool:
            lowered = raw.strip().lower()
            if lowered in {"1", "true", "yes", "on"}:
                return True
            if lowered in {"0", "false", "no", "off"}:
                return False
            raise ConfigError(f"{self.env}={raw!r} is not a boolean; use true or false")
        if kind is int or kind is float:
            try:
                value = kind(raw)
            except ValueError:
                what = "a whole number" if kind is int else "a number"
                raise ConfigError(
                    f"{self.env}={raw!r} is not {what}; set it to e.g. {_plain(self.default)}"
                ) from None
            minimum = 0 if self.minimum is None else self.minimum
            if value < minimum:
                raise ConfigError(
                    f"{self.env}={value} is below the minimum {_plain(minimum)}; "
                    f"set it to at least {_plain(minimum)} (default {_plain(self.default)})"
                )
            return value
        if kind is Path:
            return Path(raw).expanduser()
        return raw

    @property
    def shown_default(self) -> str:
        if self.shown is not None:
            return self.shown
        return _shown(self.default, self.shown_unit)

    @property
    def shown_unit(self) -> str:
        if self.unit is not None:
            return self.unit
        leaf = self.name.rsplit(".", 1)[-1]
        return next((u for suffix, u in UNITS.items() if leaf.endswith(suffix)), "")

    def option_help(self, lead: str | None = None) -> str:
        """The ``--help`` line of a CLI option that overrides this setting."""
        text = (lead or self.help).replace("`", "")
        text = text[:1].upper() + text[1:]
        unit = f" {self.shown_unit}" if self.shown_unit and self.shown is None else ""
        default = self.shown_default.replace("`", "")
        return f"{text.rstrip('.')}. Default {default}{unit}; environment: {self.env}."


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()
"""What :meth:`Setting.read` answers for a variable that is not set."""


def setting(
    default: Any,
    env: str,
    help: str,
    *,
    minimum: float | None = None,
    unit: str | None = None,
    shown: str | None = None,
    parse: Callable[[str], Any] | None = None,
    fallback: Callable[[Mapping[str, str], Mapping[str, Any]], Any] | None = None,
    secret: bool = False,
) -> Any:
    """A dataclass field that is a setting: its default and its row of the table.

    ``secret`` keeps the value out of ``repr`` (passwords).
    """
    about = Setting(env, help, minimum, unit, shown, parse, fallback)
    return field(default=default, repr=not secret, metadata={"setting": about})


def table(cls: type, prefix: str = "") -> tuple[Setting, ...]:
    """The settings of a dataclass in field order, nested dataclasses included."""
    hints = typing.get_type_hints(cls)
    rows: list[Setting] = []
    for f in fields(cls):
        about = f.metadata.get("setting")
        if isinstance(about, Setting):
            rows.append(
                replace(about, name=prefix + f.name, kind=hints[f.name], default=_default(f))
            )
        elif is_dataclass(hints[f.name]):
            rows.extend(table(hints[f.name], prefix + f.name + "."))
    return tuple(rows)


def read_env(cls: type, env: Mapping[str, str]) -> dict[str, Any]:
    """The values ``env`` sets for ``cls``'s own settings (fields not set are left out;
    a setting with a fallback is always given a value)."""
    hints = typing.get_type_hints(cls)
    own = [(f, f.metadata["setting"]) for f in fields(cls) if "setting" in f.metadata]
    rows = {
        f.name: replace(about, name=f.name, kind=hints[f.name], default=_default(f))
        for f, about in own
    }
    values = {name: value for name, row in rows.items() if (value := row.read(env)) is not UNSET}
    resolved = {name: values.get(name, row.default) for name, row in rows.items()}
    for name, row in rows.items():
        if name not in values and row.fallback is not None:
            values[name] = resolved[name] = row.fallback(env, resolved)
    return values


def _default(f: Field[Any]) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return None


def _base(kind: Any) -> Any:
    """``int`` for ``int``, ``str`` for ``str | None``."""
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    return args[0] if len(args) == 1 else kind


def _plain(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _shown(value: Any, unit: str) -> str:
    if value is None or value == () or value == "":
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return f"`{value}`"
    if unit == "bytes" and isinstance(value, int) and value >= 1024:
        for size, name in ((MIB, "MiB"), (1024, "KiB")):
            if value % size == 0:
                return f"{value // size} {name}"
    return _plain(value)


def _cache_mb(raw: str) -> int:
    # "auto" sizes the frame cache to the machine's available memory.
    if raw.strip().lower() == "auto":
        return _auto_cache_mb()
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(
            f"STRATEGYQ_DATA_CACHE_MB={raw!r} is not a whole number of MiB; "
            "set a number, or 'auto' (an eighth of the memory available)"
        ) from None


def _auto_cache_mb() -> int:
    from strategyq.data.cache import auto_cache_mb

    return auto_cache_mb()


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


def _home(env: Mapping[str, str], _: Mapping[str, Any]) -> Path:
    return default_home(env)


def _worker_id(env: Mapping[str, str], _: Mapping[str, Any]) -> str:
    return env.get("HOSTNAME") or socket.gethostname()


def _heartbeat_interval(_: Mapping[str, str], resolved: Mapping[str, Any]) -> float:
    # A third of the timeout at most, so two missed beats never look like a dead worker.
    return min(2.0, float(resolved["heartbeat_timeout_s"]) / 3)


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

    url: str | None = setting(
        None,
        "REDIS_URL",
        "`redis://`, `rediss://`, `unix://` or "
        "`redis+sentinel://host1:26379,host2:26379/<master>[/<db>]` URL; wins when set",
    )
    host: str | None = setting(None, "REDIS_HOST", "server address (the seed's)")
    port: int = setting(6379, "REDIS_PORT", "server port", minimum=1)
    password: str | None = setting(None, "REDIS_PASSWORD", "password", secret=True)
    username: str | None = setting(None, "REDIS_USERNAME", "ACL user (optional)")
    db: int = setting(0, "REDIS_DB", "database number")
    ssl: bool = setting(False, "REDIS_SSL", "TLS")
    ssl_ca_certs: str | None = setting(
        None, "REDIS_SSL_CA_CERTS", "the CA file to verify the server"
    )
    socket_timeout_s: float = setting(
        10.0, "REDIS_SOCKET_TIMEOUT", "longest wait for one Redis reply", minimum=0.1
    )
    sentinels: tuple[tuple[str, int], ...] = setting(
        (),
        "REDIS_SENTINELS",
        "find the primary through Sentinel: `host:port,…`",
        parse=lambda raw: parse_sentinels(raw),
    )
    sentinel_master: str = setting(
        DEFAULT_SENTINEL_MASTER, "REDIS_SENTINEL_MASTER", "the Sentinel name of the primary"
    )
    sentinel_password: str | None = setting(
        None,
        "REDIS_SENTINEL_PASSWORD",
        "password of the sentinels, if they ask for one",
        secret=True,
    )

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
        return cls(**read_env(cls, os.environ if env is None else env))

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

    time_limit_s: float = setting(
        60.0,
        "STRATEGYQ_TIME_LIMIT",
        "wall-clock limit of a strategy (tasks may ask for less)",
        minimum=0.1,
    )
    memory_mb: int = setting(
        2048,
        "STRATEGYQ_MEMORY_MB",
        "memory limit of a strategy (tasks may ask for less)",
        minimum=64,
    )
    answer_max_bytes: int = setting(
        32 * MIB,
        "STRATEGYQ_ANSWER_MAX_BYTES",
        "largest answer a strategy's sandbox may send back",
        minimum=1024,
    )
    max_open_files: int = 64
    max_threads: int = setting(
        64,
        "STRATEGYQ_MAX_THREADS",
        "threads and processes one strategy's sandbox child may hold (its PID cap)",
        minimum=1,
    )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SandboxLimits:
        return cls(**read_env(cls, os.environ if env is None else env))

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


SANDBOX_LIBRARIES = ("talib", "scipy", "statsmodels", "sklearn")
"""The optional libraries the sandbox can preload (``sandbox.policy.LIBRARIES`` says
which modules each brings in)."""


def parse_sandbox_libraries(raw: str | None) -> tuple[str, ...]:
    """``STRATEGYQ_SANDBOX_LIBRARIES``: comma-separated names, ``none`` for none, every
    one of :data:`SANDBOX_LIBRARIES` when unset or blank."""
    if raw is None or not raw.strip():
        return SANDBOX_LIBRARIES
    names = [n.strip().lower() for n in raw.split(",") if n.strip()]
    if names == ["none"]:
        return ()
    unknown = [n for n in names if n not in SANDBOX_LIBRARIES]
    if unknown:
        raise ConfigError(
            f"STRATEGYQ_SANDBOX_LIBRARIES names {', '.join(unknown)}, which the sandbox "
            f"cannot preload; choose among {', '.join(SANDBOX_LIBRARIES)} (or 'none')"
        )
    return tuple(dict.fromkeys(names))


@dataclass(frozen=True)
class Settings:
    """Everything a strategyq process needs to know, read once from the environment."""

    home: Path = field(
        metadata={
            "setting": Setting(
                "STRATEGYQ_HOME",
                "market data store and embedded server",
                shown="`$XDG_DATA_HOME/strategyq`, else `~/.local/share/strategyq`",
                fallback=_home,
            )
        }
    )
    redis: RedisSettings
    queue_name: str = setting(
        QUEUE_NAME, "STRATEGYQ_QUEUE", "the list producers push tasks onto and workers take from"
    )
    result_ttl_s: int = setting(
        DEFAULT_RESULT_TTL_S, "STRATEGYQ_RESULT_TTL", "how long a result is kept", minimum=1
    )
    worker_id: str = setting(
        "",
        "STRATEGYQ_WORKER_ID",
        "the worker's id (a pod name in Kubernetes)",
        shown="`$HOSTNAME`, else the host name",
        fallback=_worker_id,
    )
    concurrency: int = setting(
        1, "STRATEGYQ_CONCURRENCY", "tasks a worker runs at once (one executor each)", minimum=1
    )
    heartbeat_interval_s: float = setting(
        2.0,
        "STRATEGYQ_HEARTBEAT_INTERVAL",
        "how often a worker proves it is alive",
        minimum=0.05,
        shown="2, at most a third of the timeout",
        fallback=_heartbeat_interval,
    )
    heartbeat_timeout_s: float = setting(
        10.0,
        "STRATEGYQ_HEARTBEAT_TIMEOUT",
        "a worker silent this long is dead: its tasks are requeued",
        minimum=0.5,
    )
    reaper_interval_s: float = setting(
        3.0, "STRATEGYQ_REAPER_INTERVAL", "how often workers look for dead ones", minimum=0.05
    )
    max_attempts: int = setting(
        3,
        "STRATEGYQ_MAX_ATTEMPTS",
        "runs before a task that keeps losing its worker is dead-lettered",
        minimum=1,
    )
    executor_margin_s: float = setting(
        30.0,
        "STRATEGYQ_EXECUTOR_MARGIN",
        "time past a task's limit before the worker kills a hung executor",
        minimum=0.5,
    )
    allow_eviction: bool = setting(
        False,
        "STRATEGYQ_ALLOW_EVICTION",
        "start against an evicting policy (`allkeys-*`, `volatile-*`) anyway "
        "(tasks and results can vanish)",
    )
    grace_period_s: float = setting(
        25.0, "STRATEGYQ_GRACE_PERIOD", "time to finish in-flight tasks on SIGTERM"
    )
    max_task_bytes: int = setting(MIB, "STRATEGYQ_MAX_TASK_BYTES", "largest task run", minimum=1024)
    max_message_bytes: int = setting(
        64 * MIB,
        "STRATEGYQ_MAX_MESSAGE_BYTES",
        "largest message read for its `task_id` (a larger one is dead-lettered)",
        minimum=1024,
    )
    max_result_bytes: int = setting(
        16 * MIB,
        "STRATEGYQ_MAX_RESULT_BYTES",
        "result cap (lists truncated, counts kept)",
        minimum=64 * 1024,
    )
    max_instances: int = setting(
        10_000,
        "STRATEGYQ_MAX_INSTANCES",
        "most instances kept from a strategy (tasks may ask for fewer)",
        minimum=1,
    )
    max_symbols: int = 5_000
    max_screening_limit: int = 10_000
    data_cache_mb: int = setting(
        1024,
        "STRATEGYQ_DATA_CACHE_MB",
        "in-memory market-data cache of each executor and its sandbox host "
        "(`auto`: an eighth of the memory available, between 64 MiB and 16 GiB)",
        unit="MiB",
        shown="`auto`",
        parse=_cache_mb,
        fallback=lambda env, values: _auto_cache_mb(),
    )
    metrics_port: int = setting(
        DEFAULT_METRICS_PORT,
        "STRATEGYQ_METRICS_PORT",
        "port of `/metrics`, `/healthz`, `/readyz` (the next free port when taken; 0: off)",
    )
    metrics_host: str = setting(
        "127.0.0.1",
        "STRATEGYQ_METRICS_HOST",
        "address the metrics endpoint binds "
        "(the Dockerfile and Kubernetes manifests set `0.0.0.0`)",
    )
    recent_max: int = setting(
        10_000,
        "STRATEGYQ_RECENT_MAX",
        "tasks kept in the recent-task index (`strategyq.recent_tasks`)",
        minimum=1,
    )
    insecure_no_sandbox: bool = setting(
        False,
        "STRATEGYQ_INSECURE_NO_SANDBOX",
        "run strategies without Landlock/seccomp (unsafe; logged loudly)",
    )
    schedule_interval_s: float = setting(
        5.0,
        "STRATEGYQ_SCHEDULE_INTERVAL",
        "time between a worker's schedule ticks (0: this worker does not tick)",
    )
    sweep_max_combinations: int = setting(
        10_000,
        "STRATEGYQ_SWEEP_MAX_COMBINATIONS",
        "largest sweep grid accepted (after the constraint)",
        minimum=1,
    )
    sweep_chunk_size: int = setting(
        25,
        "STRATEGYQ_SWEEP_CHUNK_SIZE",
        "strategy calls per sweep chunk (one sandbox child each)",
        minimum=1,
    )
    sweep_max_results: int = setting(
        10_000,
        "STRATEGYQ_SWEEP_MAX_RESULTS",
        "combinations listed in a sweep's `results` (counts kept)",
        minimum=1,
    )
    sandbox_libraries: tuple[str, ...] = setting(
        SANDBOX_LIBRARIES,
        "STRATEGYQ_SANDBOX_LIBRARIES",
        "optional libraries the sandbox preloads (comma-separated, `none` for none; "
        "fewer libraries, faster forks)",
        shown="talib,scipy,statsmodels,sklearn",
        parse=parse_sandbox_libraries,
    )
    archive_url: str = setting(
        "",
        "STRATEGYQ_ARCHIVE_URL",
        "the run archive: `sqlite:///path` or `postgresql://user:password@host/db` "
        "([docs/operations.md](docs/operations.md#the-run-archive))",
        shown="`sqlite:///$STRATEGYQ_HOME/archive.db`",
        secret=True,
    )
    archive_feed_max: int = setting(
        1_000_000,
        "STRATEGYQ_ARCHIVE_FEED_MAX",
        "ended runs Redis remembers for an archiver that is down (about 100 bytes each)",
        minimum=100,
    )
    archive_retention_days: float = setting(
        0.0,
        "STRATEGYQ_ARCHIVE_RETENTION_DAYS",
        "archived runs older than this many days are deleted (0: kept)",
        unit="days",
    )
    archive_retention_runs: int = setting(
        0,
        "STRATEGYQ_ARCHIVE_RETENTION_RUNS",
        "archived runs beyond the newest this many are deleted (0: kept)",
    )
    archive_batch: int = setting(
        500, "STRATEGYQ_ARCHIVE_BATCH", "runs per archive transaction", minimum=1
    )
    archive_port: int = setting(
        9102, "STRATEGYQ_ARCHIVE_PORT", "the archiver's `/metrics`, `/healthz`, `/readyz` port"
    )
    archive_prune_interval_s: float = setting(
        300.0,
        "STRATEGYQ_ARCHIVE_PRUNE_INTERVAL",
        "time between the archiver's retention passes",
        minimum=0.05,
    )
    archive_linger_s: float = setting(
        0.5,
        "STRATEGYQ_ARCHIVE_LINGER",
        "time the archiver lets runs gather after a small batch "
        "(fewer transactions, at most this much more lag)",
    )
    sandbox: SandboxLimits = field(default_factory=SandboxLimits)

    @property
    def data_dir(self) -> Path:
        """The market data store."""
        return self.home / "data"

    @property
    def server_dir(self) -> Path:
        """The embedded Valkey server's directory (socket, AOF, pid, log)."""
        return self.home / "valkey"

    @property
    def archive_db_url(self) -> str:
        """The run archive: ``STRATEGYQ_ARCHIVE_URL``, else SQLite under the home."""
        return self.archive_url or f"sqlite:///{self.home / 'archive.db'}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from ``env`` (default: the process environment), then ``overrides``.

        Raises:
            ConfigError: a variable is malformed or out of range (the message says which
                and what to set).
        """
        env = os.environ if env is None else env
        values = read_env(cls, env)
        settings = cls(
            redis=RedisSettings.from_env(env), sandbox=SandboxLimits.from_env(env), **values
        )
        if settings.heartbeat_interval_s * 3 > settings.heartbeat_timeout_s:
            raise ConfigError(
                "STRATEGYQ_HEARTBEAT_INTERVAL must be at most a third of "
                "STRATEGYQ_HEARTBEAT_TIMEOUT "
                f"(got {settings.heartbeat_interval_s} and {settings.heartbeat_timeout_s}), "
                "or a busy worker looks dead"
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
        del values["archive_url"]  # may carry the archive database's password
        return orjson.dumps(values)

    @classmethod
    def from_child_json(cls, data: bytes | str) -> Settings:
        """Settings handed over by :meth:`for_child_process` (no Redis: the child has none)."""
        values = orjson.loads(data)
        values["home"] = Path(values["home"])
        values["sandbox"] = SandboxLimits(**values["sandbox"])
        values["sandbox_libraries"] = tuple(values.get("sandbox_libraries", ()))
        return cls(redis=RedisSettings(), **values)


SETTINGS: tuple[Setting, ...] = table(Settings)
"""Every setting of a worker, producer and CLI process (Redis's included), in field order."""


def markdown(rows: tuple[Setting, ...]) -> str:
    """The README's configuration table for ``rows``."""
    lines = ["| Variable | Default | Unit | Meaning |", "|---|---|---|---|"]
    for row in rows:
        help_text = row.help.replace("|", "\\|")
        lines.append(f"| `{row.env}` | {row.shown_default} | {row.shown_unit} | {help_text} |")
    return "\n".join(lines) + "\n"


def option_help(name: str, lead: str | None = None, rows: tuple[Setting, ...] = ()) -> str:
    """The ``--help`` of a CLI option that overrides setting ``name`` (its field name) of
    ``rows`` (default :data:`SETTINGS`)."""
    (row,) = (r for r in rows or SETTINGS if r.name == name)
    return row.option_help(lead)


END = "<!-- end of settings table -->"


def _begin(name: str) -> str:
    return f"<!-- settings table: {name} (python -m tools.settings_table) -->"


def document_tables(text: str, names: Iterable[str]) -> dict[str, str]:
    """The generated tables (``<!-- settings table: NAME … -->`` to :data:`END`) a
    document holds now, by name."""
    out = {}
    for name in names:
        begin = _begin(name)
        if begin in text:
            start = text.index(begin) + len(begin)
            out[name] = text[start : text.index(END, start)].strip("\n") + "\n"
    return out


def update_document(path: Path, tables: Mapping[str, tuple[Setting, ...]]) -> bool:
    """Rewrite the settings tables in ``path`` from ``tables``; True when it changed."""
    text = new = path.read_text()
    for name, rows in tables.items():
        begin = _begin(name)
        if begin in new:
            start = new.index(begin) + len(begin)
            end = new.index(END, start)
            new = new[:start] + "\n" + markdown(rows) + new[end:]
    if new != text:
        path.write_text(new)
    return new != text
