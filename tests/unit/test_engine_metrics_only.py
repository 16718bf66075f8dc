"""``backtest_metrics`` (rows or columns) reports exactly ``run_backtest``'s metrics."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from strategyq.data import MarketData, write_synthetic
from strategyq.engine import TradeModel, backtest_metrics, market_from_frame, run_backtest
from strategyq.engine.columnar import column_signals
from strategyq.errors import EngineError

MODELS = [
    TradeModel.from_args({"hold_days": None, "max_positions": 1}),
    TradeModel.from_args({"hold_days": 10, "max_positions": 4, "stop_loss_pct": 3.0}),
    TradeModel.from_args(
        {"hold_days": None, "max_positions": 2, "take_profit_pct": 6.0, "trailing_stop_pct": 4.0}
    ),
    TradeModel(hold_days="auto", max_positions=1, commission_bps=10.0),
]


@pytest.fixture(scope="module")
def frame(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    root: Path = tmp_path_factory.mktemp("metrics-only") / "data"
    write_synthetic(root, 8, 2, seed=11)
    market = MarketData(root)
    return market.load(market.tickers(), None, None, indicators=False).frame


def _columns(frame: pd.DataFrame, seed: int, *, flags: str = "both") -> dict[str, list[Any]]:
    rng = np.random.default_rng(seed)
    rows = frame[rng.random(len(frame)) < 0.04]
    columns: dict[str, list[Any]] = {
        "ticker": rows["ticker"].astype(str).tolist(),
        "date": rows["date"].dt.strftime("%Y-%m-%dT%H:%M:%S").tolist(),
        "close": rows["close"].tolist(),
    }
    entry = (rng.random(len(rows)) < 0.6).tolist()
    leave = (rng.random(len(rows)) < 0.5).tolist()
    if flags in ("both", "entry"):
        columns["entry"] = entry
    if flags in ("both", "exit"):
        columns["exit"] = leave
    return columns


def _rows(columns: dict[str, list[Any]]) -> list[dict[str, Any]]:
    names = list(columns)
    return [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]


def _single(rows: Any, market: Any, model: TradeModel, start: datetime | None) -> Any:
    return run_backtest(rows, market, model, start=start, end=None)["performance_metrics"]


@pytest.mark.parametrize("flags", ["both", "entry", "exit", "none"])
@pytest.mark.parametrize("model", MODELS, ids=["exits", "stops", "trailing", "auto"])
def test_columns_give_the_metrics_of_the_rows_they_make(
    frame: pd.DataFrame, model: TradeModel, flags: str
) -> None:
    market = market_from_frame(frame)
    start = datetime(2023, 9, 1)  # signals before it are dropped
    for seed in range(3):
        columns = _columns(frame, seed, flags=flags)
        assert column_signals(columns, market, None) is not None  # the column path is taken
        rows = _rows(columns)
        for begin in (None, start):
            expected = _single(rows, market, model, begin)
            assert backtest_metrics(columns, market, model, start=begin, end=None) == expected
            assert backtest_metrics(rows, market, model, start=begin, end=None) == expected


def test_unknown_tickers_and_fields_read_per_instance(frame: pd.DataFrame) -> None:
    market = market_from_frame(frame)
    model = MODELS[1]
    columns = _columns(frame, 5)
    columns["ticker"][::7] = ["NOPE"] * len(columns["ticker"][::7])
    rows = _rows(columns)
    assert column_signals(columns, market, None) is not None
    assert backtest_metrics(columns, market, model, start=None, end=None) == _single(
        rows, market, model, None
    )
    # Scores, directions and untrimmed tickers take the row path, with the same result.
    for change in (
        {"score": [float(i % 5) for i in range(len(rows))]},
        {"direction": ["short" if i % 3 else "long" for i in range(len(rows))]},
        {"ticker": [f" {t}" for t in columns["ticker"]]},
    ):
        varied = {**columns, **change}
        assert column_signals(varied, market, None) is None
        assert backtest_metrics(varied, market, model, start=None, end=None) == _single(
            _rows(varied), market, model, None
        )


def test_malformed_columns_raise_the_row_paths_error(frame: pd.DataFrame) -> None:
    market = market_from_frame(frame)
    columns = _columns(frame, 2)
    columns["date"][3] = "not a date"
    with pytest.raises(EngineError) as single:
        run_backtest(_rows(columns), market, MODELS[0], start=None, end=None)
    with pytest.raises(EngineError) as metrics:
        backtest_metrics(columns, market, MODELS[0], start=None, end=None)
    assert str(metrics.value) == str(single.value)
