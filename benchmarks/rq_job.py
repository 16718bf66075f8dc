"""The job RQ runs in the throughput comparison: the same data, strategy body and engine.

It runs the strategy with a plain ``exec`` (RQ has no sandbox), so the
comparison gives RQ every advantage but the queue itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from strategyq.data import MarketData
from strategyq.engine import TradeModel, run_backtest

_MARKETS: dict[str, MarketData] = {}


def run_strategy(home: str, code: str, symbols: list[str], start: str, end: str) -> dict[str, Any]:
    market = _MARKETS.setdefault(home, MarketData(Path(home) / "data"))
    frame = market.load(symbols, start, end).frame
    namespace: dict[str, Any] = {"pd": pd, "np": np}
    exec(code, namespace)
    strategy = next(v for k, v in namespace.items() if callable(v) and k not in {"pd", "np"})
    instances = strategy(frame)
    return run_backtest(instances, frame, TradeModel(), start=start, end=end)
