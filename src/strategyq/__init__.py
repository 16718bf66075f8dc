"""strategyq: run trading strategies as backtests and screens from a Redis queue.

The producer API (the seed's functions) is importable from here::

    from strategyq import add_backtest_task, add_screening_task, get_task_result

``strategyq.backtest(...)``, ``strategyq.screen(...)`` and ``strategyq.sweep(...)``
run a task here, through the same engine and sandbox, and return a ``Result``.
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
    # Local runs (the executor client) and Result (pandas): on first use as well.
    "LocalSession": "strategyq.local",
    "backtest": "strategyq.local",
    "screen": "strategyq.local",
    "Result": "strategyq.result",
}


def __getattr__(name: str) -> Any:
    if name == "sweep":
        # The sweep package, callable as the local sweep (see strategyq.sweep).
        return importlib.import_module("strategyq.sweep")
    module = _PRODUCER_API.get(name)
    if module is None:
        raise AttributeError(f"module 'strategyq' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def import_frame(frame: Any, ticker: str | None = None, *, skip_bad_rows: bool = False) -> Any:
    """Store a DataFrame of daily bars in this machine's market data store (all or nothing).

    ``frame`` is what ``yfinance.download(...)`` returns (one or many tickers,
    ``auto_adjust`` on or off, either ``group_by``), a one-ticker frame indexed by
    date (``yf.Ticker("IBM").history()``, with ``ticker="IBM"``), or a long frame
    with ``ticker`` and ``date`` columns. Stored sessions of the same dates are replaced.

    Returns:
        An ``ImportSummary`` (tickers, rows, rows skipped with ``skip_bad_rows``).

    Raises:
        ImportRejected: a row is invalid (each one listed in ``.problems``); nothing
            was stored.
    """
    from strategyq.data.importer import import_frame as _import_frame
    from strategyq.settings import Settings

    return _import_frame(Settings.from_env().data_dir, frame, ticker, skip_bad_rows=skip_bad_rows)


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
    "LocalSession",
    "Result",
    "__version__",
    "add_backtest_task",
    "add_screening_task",
    "add_sweep_task",
    "backtest",
    "cancel_task",
    "connect",
    "get_task_result",
    "import_frame",
    "recent_tasks",
    "screen",
    "sweep",
    "wait_for_result",
]
