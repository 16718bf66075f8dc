"""Building verified redis-py clients from the settings.

``REDIS_URL`` wins; else ``REDIS_HOST``/``REDIS_PORT``/…; else the embedded
Valkey server under ``STRATEGYQ_HOME``. Every failure to connect becomes one
:class:`~strategyq.errors.ConnectionFailed` line that says where and what to do.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

from strategyq.errors import ConnectionFailed
from strategyq.server import EmbeddedServer
from strategyq.settings import RedisSettings, Settings

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
    except (redis.RedisError, OSError) as exc:
        client.close()
        raise ConnectionFailed(describe_failure(exc, where, conf.password)) from exc
    finally:
        probe.close()
    log.debug("connected to %s", where)
    return client
