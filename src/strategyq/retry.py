"""Which Redis failures are transient, and retrying a call through them.

A dropped connection or a timeout is not the only condition that passes by
itself. A server answers with an error reply while it is out of memory under
``noeviction`` (``OOM``), while another client's script runs past
``busy-reply-threshold`` (``BUSY``), after a failover turned it into a replica
(``READONLY``), while it loads its data set at start-up (``LOADING``) and
while a replica has lost its primary (``MASTERDOWN``), and to a blocked
command when a failover demotes the server under it (``UNBLOCKED``). None of
these means the command is wrong: the worker waits and tries again, keeping
what it has to write in memory, exactly as for a lost connection.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from typing import TypeVar

import redis

log = logging.getLogger(__name__)

T = TypeVar("T")

TRANSIENT_REPLIES = frozenset(
    {
        "OOM",
        "BUSY",
        "READONLY",
        "LOADING",
        "MASTERDOWN",
        "UNBLOCKED",
        "TRYAGAIN",
        "NOREPLICAS",
        "CLUSTERDOWN",
    }
)
"""Error-reply codes that describe the server's state, not the command."""

_TRANSIENT_CLASSES: tuple[type[Exception], ...] = (
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.BusyLoadingError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,  # MasterDownError is one
)


def reply_code(exc: BaseException) -> str | None:
    """The error reply's code (``OOM``, ``BUSY``, …) when ``exc`` is an error reply."""
    code = getattr(exc, "status_code", None)
    if isinstance(code, str) and code:
        return code  # LOADING arrives as a ConnectionError that keeps its code here
    if not isinstance(exc, redis.ResponseError):
        return None
    # redis-py keeps unknown codes (BUSY, NOREPLICAS) in the message itself.
    first = str(exc).split(" ", 1)[0]
    return first if first.isupper() else None


def is_transient(exc: BaseException) -> bool:
    """True when the call may succeed if tried again later: a lost connection, a timeout,
    or one of :data:`TRANSIENT_REPLIES`. Refused credentials are not transient."""
    if isinstance(exc, redis.AuthenticationError):
        return False
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        return True
    if isinstance(exc, _TRANSIENT_CLASSES):
        return True
    return reply_code(exc) in TRANSIENT_REPLIES


def needs_new_connection(exc: BaseException) -> bool:
    """True when the connection talks to a server that can no longer take writes.

    After a failover the old primary answers ``READONLY``; a fresh connection
    resolves the address again (a Sentinel pool asks the sentinels, a DNS name
    that a managed service moved points at the new primary).
    """
    return reply_code(exc) in {"READONLY", "MASTERDOWN", "UNBLOCKED"} or isinstance(
        exc, redis.exceptions.ReadOnlyError
    )


def describe(exc: BaseException) -> str:
    """A short, single-line reason for a log line."""
    code = reply_code(exc)
    text = " ".join(str(exc).split())[:200] or type(exc).__name__
    if code and not text.startswith(code):
        return f"{code} {text}"
    return text


def reset_connections(client: redis.Redis) -> None:
    """Drop every pooled connection, so the next command connects (and resolves) afresh."""
    try:
        client.connection_pool.disconnect()
    except (redis.RedisError, OSError) as exc:  # pragma: no cover - best effort
        log.debug("could not reset the connection pool: %s", exc)


def retry_transient(
    fn: Callable[[], T],
    *,
    what: str,
    client: redis.Redis | None = None,
    on_state: Callable[[bool], None] | None = None,
    stop: threading.Event | None = None,
    initial_s: float = 0.05,
    cap_s: float = 5.0,
) -> T:
    """Call ``fn`` until it returns, backing off with jitter through transient failures.

    Args:
        fn: The call; anything it raises that is not transient propagates at once.
        what: What the call does, for the log line.
        client: The client ``fn`` uses; its connections are reset after ``READONLY``.
        on_state: Called with False on each transient failure and True on success.
        stop: When set while waiting, the last error is raised instead of retrying.
        initial_s: The first back-off.
        cap_s: The longest back-off.
    """
    backoff = initial_s
    failed = False
    while True:
        try:
            value = fn()
        except redis.RedisError as exc:
            if not is_transient(exc):
                raise
            failed = True
            if on_state is not None:
                on_state(False)
            if client is not None and needs_new_connection(exc):
                reset_connections(client)
            log.warning("%s failed (%s); retrying in %.2fs", what, describe(exc), backoff)
            pause = backoff * random.uniform(0.5, 1.5)
            if stop is not None:
                if stop.wait(pause):
                    raise
            else:
                threading.Event().wait(pause)
            backoff = min(backoff * 2, cap_s)
            continue
        if failed and on_state is not None:
            on_state(True)
        return value
