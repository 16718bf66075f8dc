"""The whole-grid entry ``f(df, grid)``: split by combination, each equals its own call.

The grid example and the per-combination example (sma_grid, sma_params) run on the
same frame; every combination's share of the grid call must give the same instances
and the same metrics as the per-combination call with its params.
"""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from strategyq.data import MarketData
from strategyq.engine import backtest_metrics, market_from_frame, normalize_instances
from strategyq.errors import BadResult
from strategyq.examples import source
from strategyq.executor.run.sweep import _by_combination, takes_grid
from strategyq.sandbox import result
from strategyq.sandbox.result import ColumnRun
from strategyq.trademodel import TradeModel

START, END = dt.datetime(2004, 1, 2), dt.datetime(2012, 12, 31)


def _function(name: str) -> Any:
    scope: dict[str, Any] = {"pd": pd}
    exec(compile(source(name), name, "exec"), scope)
    entry = {"sma_grid": "sma_cross_grid", "sma_params": "sma_cross_strategy"}[name]
    return scope[entry]


def _travel(value: Any, as_columns: bool) -> Any:
    (run,) = result.decode(result.encode_runs([value]), keep_columns=True)
    assert isinstance(run, ColumnRun)
    return run if as_columns else run.rows()


@pytest.fixture(scope="module")
def frame(data_sample_root: Path) -> pd.DataFrame:
    return MarketData(data_sample_root).load(["AAPL", "MSFT"], START, END).frame


def test_the_grid_example_is_recognised_and_the_params_one_is_not() -> None:
    assert takes_grid(source("sma_grid")) is True
    assert takes_grid("def _helper(df, grid):\n    return []\n") is False
    assert takes_grid(source("sma_params")) is False


@pytest.mark.parametrize("as_columns", [True, False], ids=["columns", "rows"])
def test_every_combination_of_the_grid_call_equals_its_own_call(
    frame: pd.DataFrame, as_columns: bool
) -> None:
    combos = [(f, s) for f, s in itertools.product([5, 10, 20], [30, 50, 100]) if f < s]
    grid = {"fast": [f for f, _ in combos], "slow": [s for _, s in combos]}
    returned = _function("sma_grid")(frame.copy(deep=False), grid)
    # Encoded and decoded as a sandbox child's answer travels: columns, or rows.
    output = _travel(returned, as_columns)
    split = _by_combination(output, len(combos))
    single_fn = _function("sma_params")
    market = market_from_frame(frame)
    model = TradeModel()
    for (fast, slow), part in zip(combos, split, strict=True):
        single = single_fn(frame.copy(deep=False), {"fast": fast, "slow": slow})
        single_cols = _travel(single, True)
        rows = part.rows() if isinstance(part, ColumnRun) else part
        assert rows == single_cols.rows()
        assert len(rows) > 0
        given = part.columns if isinstance(part, ColumnRun) else part
        got = backtest_metrics(given, market, model, start=START, end=END)
        want = backtest_metrics(single_cols.columns, market, model, start=START, end=END)
        assert got == want
        assert normalize_instances(rows).records == normalize_instances(single_cols.rows()).records


def test_a_grid_result_without_or_with_a_bad_combination_is_refused() -> None:
    with pytest.raises(BadResult, match="'combination' field"):
        _by_combination([{"ticker": "AAPL", "date": "2010-01-04"}], 3)
    with pytest.raises(BadResult, match="from 0 to 2"):
        _by_combination(ColumnRun({"ticker": ["AAPL"], "combination": [3]}), 3)
    with pytest.raises(BadResult, match="from 0 to 2"):
        _by_combination([{"ticker": "AAPL", "combination": 1.5}], 3)
    assert _by_combination([], 2) == [[], []]
    empty = _by_combination(ColumnRun({}), 2)
    assert [p.columns for p in empty] == [{}, {}]
