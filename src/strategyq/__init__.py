"""strategyq: run trading strategies as backtests and screens from a Redis queue.

The producer API (the seed's functions) is importable from here::

    from strategyq import add_backtest_task, add_screening_task, get_task_result
"""

from __future__ import annotations

__version__ = "0.1.0"

from strategyq.client import (
    add_backtest_task,
    add_screening_task,
    add_sweep_task,
    cancel_task,
    get_task_result,
    wait_for_result,
)

__all__ = [
    "__version__",
    "add_backtest_task",
    "add_screening_task",
    "add_sweep_task",
    "cancel_task",
    "get_task_result",
    "wait_for_result",
]
