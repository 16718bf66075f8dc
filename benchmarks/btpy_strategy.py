"""The SMA crossover as backtesting.py users write it (a module of its own: its optimiser
pickles the strategy class to send it to its worker processes)."""

from __future__ import annotations

from typing import Any

import pandas as pd
from backtesting import Strategy
from backtesting.lib import crossover


def sma(values: Any, n: int) -> Any:
    return pd.Series(values).rolling(n).mean().to_numpy()


class SmaCross(Strategy):  # type: ignore[misc]
    fast = 10
    slow = 20

    def init(self) -> None:
        self.ma_fast = self.I(sma, self.data.Close, self.fast)
        self.ma_slow = self.I(sma, self.data.Close, self.slow)

    def next(self) -> None:
        # Orders placed here fill at the next session's open (trade_on_close=False).
        if crossover(self.ma_fast, self.ma_slow):
            self.buy()
        elif crossover(self.ma_slow, self.ma_fast):
            self.position.close()
