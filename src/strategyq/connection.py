"""Building verified redis-py clients from the settings.

``REDIS_URL`` wins; else ``REDIS_HOST``/``REDIS_PORT``/…; else the embedded
Valkey server under ``STRATEGYQ_HOME``. Every failure to connect becomes one
:class:`~strategyq.errors.ConnectionFailed` line that says where and what to do.
"""

from __future__ import annotations

import logging
import ssl
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry
from redis.sentinel import MasterNotFoundError, Sentinel, SentinelConnectionPool

from strategyq.embedded_valkey import EmbeddedServer
from strategyq.errors import ConfigError, ConnectionFailed
from strategyq.settings import SENTINEL_SCHEMES, RedisSettings, Settings, parse_sentinels

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
HEALTH_CHECK_INTERVAL_S = 30
RETRIES = 3

T = TypeVar("T")


class _Retry(Retry):
    """Retry dropped connections and timeouts, but never refused credentials or certificates.

    redis-py's AuthenticationError is a ConnectionError; retrying it only delays
    the one clear message (and hammers the server with bad passwords).
    """

    def call_with_retry(
        self,
        do: Callable[[], T],
        fail: Callable[..., Any],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> T:
        def retryable(error: Exception) -> bool:
            if isinstance(error, redis.AuthenticationError) or _has_cause(
                error, ssl.SSLCertVerificationError
            ):
                return False
            return is_retryable is None or is_retryable(error)

        return super().call_with_retry(do, fail, retryable, with_failure_count)


@dataclass(frozen=True)
class SentinelTarget:
    """A primary found through Sentinel: the sentinels, the master's name and how to log in."""

    nodes: tuple[tuple[str, int], ...]
    master: str
    db: int
    ssl: bool
    username: str | None
    password: str | None

    def describe(self) -> str:
        nodes = ",".join(f"{h}:{p}" for h, p in self.nodes)
        return f"{'rediss' if self.ssl else 'redis'}+sentinel://{nodes}/{self.master}/{self.db}"


def sentinel_target(conf: RedisSettings) -> SentinelTarget | None:
    """The Sentinel set-up named by ``redis+sentinel://…`` or ``REDIS_SENTINELS``, if any.

    The url form is ``redis+sentinel://[user:password@]host1:26379,host2:26379/<master>[/<db>]``
    (``rediss+sentinel://`` for TLS to the primary).

    Raises:
        ConfigError: The url is not of that form.
    """
    if conf.url:
        scheme, _, rest = conf.url.partition("://")
        if scheme.lower() not in SENTINEL_SCHEMES:
            return None
        netloc, _, path = rest.partition("/")
        userinfo, _, hosts = netloc.rpartition("@")
        parts = [p for p in path.split("?", 1)[0].split("/") if p]
        usage = (
            "write it as redis+sentinel://[user:password@]host1:26379,host2:26379/<master>[/<db>]"
        )
        if not parts or len(parts) > 2:
            raise ConfigError(f"REDIS_URL {conf.describe()} names no master; {usage}")
        try:
            db = int(parts[1]) if len(parts) == 2 else conf.db
        except ValueError:
            raise ConfigError(
                f"REDIS_URL {conf.describe()}: {parts[1]!r} is no db; {usage}"
            ) from None
        user, _, password = userinfo.partition(":")
        return SentinelTarget(
            nodes=parse_sentinels(hosts, "REDIS_URL"),
            master=unquote(parts[0]),
            db=db,
            ssl=scheme.lower() == "rediss+sentinel",
            username=unquote(user) if user else conf.username,
            password=unquote(password) if password else conf.password,
        )
    if conf.sentinels:
        return SentinelTarget(
            nodes=conf.sentinels,
            master=conf.sentinel_master,
            db=conf.db,
            ssl=conf.ssl,
            username=conf.username,
            password=conf.password,
        )
    return None


def redis_url_for(settings: Settings, *, start_embedded: bool = True) -> str:
    """The url to connect to, without credentials for host/port settings.

    Args:
        settings: The process settings.
        start_embedded: Start the embedded server when it is the target and not running.

    Raises:
        ServerError: The embedded server was needed and could not be started.
    """
    conf = settings.redis
    if conf.url:
        return conf.url
    target = sentinel_target(conf)
    if target is not None:
        return target.describe()
    if conf.host:
        host = f"[{conf.host}]" if ":" in conf.host and not conf.host.startswith("[") else conf.host
        return f"{'rediss' if conf.ssl else 'redis'}://{host}:{conf.port}/{conf.db}"
    server = EmbeddedServer(settings.server_dir)
    return server.ensure_running() if start_embedded else server.url


def _where(settings: Settings, url: str) -> str:
    if settings.redis.embedded:
        return f"embedded Valkey at {url}"
    return settings.redis.describe()


def _client_kwargs(conf: RedisSettings, scheme: str) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "socket_timeout": conf.socket_timeout_s,
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
        "health_check_interval": HEALTH_CHECK_INTERVAL_S,
        "retry": _Retry(
            ExponentialWithJitterBackoff(cap=1.0, base=0.05),
            RETRIES,
            supported_errors=(redis.ConnectionError, redis.TimeoutError),
        ),
    }
    # A password or username in the url wins: redis-py lets url options override these.
    if conf.password is not None:
        kwargs["password"] = conf.password
    if conf.username is not None:
        kwargs["username"] = conf.username
    if scheme == "rediss" and conf.ssl_ca_certs:
        kwargs["ssl_ca_certs"] = conf.ssl_ca_certs
    return kwargs


def _has_cause(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _has_tls_cause(exc: BaseException) -> bool:
    if _has_cause(exc, ssl.SSLError):
        return True
    text = str(exc)
    return "SSL" in text or "certificate" in text.lower()


def _short_reason(exc: BaseException, secret: str | None) -> str:
    reason = " ".join(str(exc).split()) or type(exc).__name__
    if secret:
        reason = reason.replace(secret, "***")
    return reason[:200]


def describe_failure(exc: BaseException, where: str, secret: str | None = None) -> str:
    """One self-contained line for a failed connection attempt (never the password)."""
    text = str(exc)
    if isinstance(exc, redis.AuthenticationError) or any(
        marker in text for marker in ("NOAUTH", "WRONGPASS", "invalid password", "AUTH")
    ):
        return (
            f"authentication failed at {where}: the server refused the credentials; "
            "check REDIS_PASSWORD/REDIS_USERNAME (or the user:password in REDIS_URL)"
        )
    if _has_tls_cause(exc):
        return (
            f"TLS handshake failed with {where} ({_short_reason(exc, secret)}); check that the "
            "server speaks TLS and that REDIS_SSL_CA_CERTS names the CA that signed its certificate"
        )
    if isinstance(exc, redis.TimeoutError):
        return (
            f"timed out talking to {where}; is the server running and reachable, and does it use "
            "TLS exactly when you do (rediss://, REDIS_SSL)? check REDIS_URL/REDIS_HOST/REDIS_PORT"
        )
    if where.startswith("embedded"):
        return (
            f"cannot reach the {where} ({_short_reason(exc, secret)}); start it with "
            "`strategyq server start`, or set REDIS_URL/REDIS_HOST to use another server"
        )
    return (
        f"cannot reach {where} ({_short_reason(exc, secret)}); is the server running? "
        "check REDIS_URL/REDIS_HOST/REDIS_PORT"
    )


def connect(
    settings: Settings,
    *,
    decode_responses: bool = False,
    start_embedded: bool = True,
    **kwargs: Any,
) -> redis.Redis:
    """A redis-py client for the configured server, verified with PING.

    Args:
        settings: The process settings.
        decode_responses: Return ``str`` instead of ``bytes``.
        start_embedded: Start the embedded server when it is the target and not running.
        **kwargs: Extra ``redis.Redis`` options; they override the defaults here.

    Raises:
        ConnectionFailed: The server cannot be reached, refuses the credentials or the
            TLS handshake fails.
        ServerError: The embedded server was needed and could not be started.
    """
    conf = settings.redis
    target = sentinel_target(conf)
    if target is not None:
        return _connect_sentinel(conf, target, decode_responses=decode_responses, **kwargs)
    url = redis_url_for(settings, start_embedded=start_embedded)
    scheme = urlsplit(url).scheme.lower()
    options = _client_kwargs(conf, scheme)
    options.update(kwargs)
    options["decode_responses"] = decode_responses
    where = _where(settings, url)
    try:
        client = redis.Redis.from_url(url, **options)
    except (ValueError, TypeError) as exc:
        raise ConnectionFailed(
            f"invalid Redis address {conf.describe()}: {_short_reason(exc, conf.password)}; "
            "fix REDIS_URL (redis://, rediss:// or unix://) or REDIS_HOST/REDIS_PORT"
        ) from None
    # Verify on a short-fused probe: a TLS mismatch or a silent host would otherwise hang for
    # socket_timeout on every retry before the user hears anything.
    probe_options = {
        **options,
        "socket_timeout": min(conf.socket_timeout_s, CONNECT_TIMEOUT_S),
        "retry": _Retry(
            ExponentialWithJitterBackoff(cap=1.0, base=0.05), 1, (redis.ConnectionError,)
        ),
    }
    probe = redis.Redis.from_url(url, **probe_options)
    try:
        probe.ping()
        _refuse_a_sentinel(probe, where)
    except (redis.RedisError, OSError) as exc:
        client.close()
        raise ConnectionFailed(describe_failure(exc, where, conf.password)) from exc
    except ConnectionFailed:
        client.close()
        raise
    finally:
        probe.close()
    log.debug("connected to %s", where)
    return client


def _refuse_a_sentinel(client: redis.Redis, where: str) -> None:
    """A Sentinel answers PING but holds no data: say how to use it instead."""
    try:
        info = client.info("server")
        # Redis says redis_mode; Valkey says server_mode.
        mode = info.get("redis_mode") or info.get("server_mode")
    except redis.ResponseError:  # INFO refused by an ACL: nothing to learn
        return
    if mode == "sentinel":
        raise ConnectionFailed(
            f"{where} is a Redis Sentinel, not a data server; point strategyq at the primary "
            "it watches with REDIS_URL=redis+sentinel://<host>:26379,<host>:26379/<master> "
            "or REDIS_SENTINELS=<host>:26379,… and REDIS_SENTINEL_MASTER=<master>"
        )


def _connect_sentinel(
    conf: RedisSettings, target: SentinelTarget, *, decode_responses: bool, **kwargs: Any
) -> redis.Redis:
    """A client of the primary that Sentinel names; it follows failovers by itself.

    The pool asks the sentinels for the primary's address on every new connection, and
    a connection that hits ``READONLY`` (a demoted primary) is dropped, so the next
    command reaches the promoted one.
    """
    options = _client_kwargs(conf, "rediss" if target.ssl else "redis")
    options.update(kwargs)
    options["decode_responses"] = decode_responses
    options["db"] = target.db
    if target.password is not None:
        options["password"] = target.password
    if target.username is not None:
        options["username"] = target.username
    if target.ssl:
        options["ssl"] = True
    sentinel_kwargs: dict[str, Any] = {
        "socket_timeout": CONNECT_TIMEOUT_S,
        "socket_connect_timeout": CONNECT_TIMEOUT_S,
    }
    if conf.sentinel_password is not None:
        sentinel_kwargs["password"] = conf.sentinel_password
    where = f"Sentinel {target.describe()}"
    sentinel = Sentinel(list(target.nodes), sentinel_kwargs=sentinel_kwargs)  # type: ignore[no-untyped-call]
    try:
        sentinel.discover_master(target.master)  # type: ignore[no-untyped-call]
    except MasterNotFoundError as exc:
        for node in sentinel.sentinels:
            node.close()
        raise ConnectionFailed(
            f"no sentinel of {target.describe()} names a primary {target.master!r} "
            f"({_short_reason(exc, target.password)}); check that the sentinels run and "
            "REDIS_SENTINELS lists them, and that REDIS_SENTINEL_MASTER (or the url's "
            "/<master>) is the name given to `sentinel monitor`"
        ) from None
    except (redis.RedisError, OSError) as exc:
        raise ConnectionFailed(describe_failure(exc, where, conf.sentinel_password)) from exc
    client: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
        target.master, redis_class=redis.Redis, **options
    )
    try:
        client.ping()
    except (redis.RedisError, OSError) as exc:
        client.close()
        raise ConnectionFailed(describe_failure(exc, where, target.password)) from exc
    log.debug("connected to %s", where)
    return client


_FOLLOWED: weakref.WeakKeyDictionary[SentinelConnectionPool, tuple[Any, ...]] = (
    weakref.WeakKeyDictionary()
)
"""The primary each pool's :func:`follow_primary` last found."""


def follow_primary(client: redis.Redis) -> bool:
    """Ask the sentinels where the primary is; on a change, leave the old one at once.

    After a failover the demoted primary keeps taking writes until the sentinels
    reconfigure it (seconds), and everything written there in between is lost when
    it resyncs. A connection is otherwise only moved when it hits ``READONLY``; asking
    on every heartbeat bounds that window to one heartbeat interval. (No effect without
    Sentinel.)

    The move is told against the primary this function last found, not the pool's own
    address: every new connection asks the sentinels too and updates that address
    without a word, so a reconnect between two heartbeats would otherwise hide the move.

    Returns:
        True when the primary moved.
    """
    pool = client.connection_pool
    if not isinstance(pool, SentinelConnectionPool):
        return False
    before = _FOLLOWED.get(pool, pool.master_address)
    # Updates the pool's address and drops idle connections to the old one; connections
    # in use are dropped when they come back (the pool no longer owns them).
    after = tuple(pool.get_master_address())  # type: ignore[no-untyped-call]
    _FOLLOWED[pool] = after
    if before is not None and after != tuple(before):
        log.warning("Sentinel names a new primary %s:%s (was %s:%s); reconnecting", *after, *before)
        return True
    return False
