"""The backtest and screening engine: pure functions from instances and bars to results.

No I/O and no user code: the strategy has already run in the sandbox; this
package turns its instances into trades, metrics and rankings, as plain JSON.
"""

from __future__ import annotations

from strategyq.engine.backtest import (
    backtest_metrics,
    backtest_metrics_grid,
    backtest_metrics_many,
    run_backtest,
)
from strategyq.engine.instances import NormalizedInstances, normalize_instances
from strategyq.engine.market import Market, market_from_frame
from strategyq.engine.metrics import METRIC_NAMES, TRADING_DAYS
from strategyq.engine.screening import run_screening
from strategyq.trademodel import TradeModel

__all__ = [
    "METRIC_NAMES",
    "TRADING_DAYS",
    "Market",
    "NormalizedInstances",
    "TradeModel",
    "backtest_metrics",
    "backtest_metrics_grid",
    "backtest_metrics_many",
    "market_from_frame",
    "normalize_instances",
    "run_backtest",
    "run_screening",
]
