"""strategyq: run trading strategies as backtests and screens from a Redis queue.

The producer API (the seed's functions) is importable from here::

    from strategyq import add_backtest_task, add_screening_task, get_task_result

``strategyq.connect()`` returns a client for the configured server (the
embedded one when no ``REDIS_*`` is set).
"""

from __future__ import annotations

__version__ = "0.1.0"

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import redis

    from strategyq.client import (
        add_backtest_task,
        add_screening_task,
        add_sweep_task,
        cancel_task,
        get_task_result,
        wait_for_result,
    )
    from strategyq.queue import recent_tasks

# Loaded on first use: the executor and sandbox processes import strategyq.* and
# must not load the Redis client that the producer API needs.
_PRODUCER_API = {
    "add_backtest_task": "strategyq.client",
    "add_screening_task": "strategyq.client",
    "add_sweep_task": "strategyq.client",
    "cancel_task": "strategyq.client",
    "get_task_result": "strategyq.client",
    "wait_for_result": "strategyq.client",
    "recent_tasks": "strategyq.queue",
}


def __getattr__(name: str) -> Any:
    module = _PRODUCER_API.get(name)
    if module is None:
        raise AttributeError(f"module 'strategyq' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def connect(*, decode_responses: bool = True, **kwargs: Any) -> redis.Redis:
    """A client for the server the environment names (``REDIS_URL``, ``REDIS_HOST``, …).

    With no ``REDIS_*`` set, this is the embedded Valkey server under
    ``STRATEGYQ_HOME``, started if it is not running.

    Args:
        decode_responses: Return ``str`` instead of ``bytes`` (as the seed's client does).
        **kwargs: Extra ``redis.Redis`` options.

    Raises:
        ConnectionFailed: The server cannot be reached or refuses the credentials.
    """
    from strategyq.connection import connect as _connect
    from strategyq.settings import Settings

    return _connect(Settings.from_env(), decode_responses=decode_responses, **kwargs)


__all__ = [
    "__version__",
    "add_backtest_task",
    "add_screening_task",
    "add_sweep_task",
    "cancel_task",
    "connect",
    "get_task_result",
    "recent_tasks",
    "wait_for_result",
]
