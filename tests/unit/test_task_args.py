"""Trade-model args are validated once, when a task is parsed (producer and worker alike)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import orjson
import pytest

from strategyq.protocol.envelope import MalformedTask
from strategyq.protocol.task import BacktestArgs, parse_task
from strategyq.trademodel import TradeModel


def backtest_message(**args: Any) -> bytes:
    return orjson.dumps(
        {
            "task_id": "t-1",
            "task_type": "backtest",
            "args": {
                "strategy_code": "def s(df):\n    return []\n",
                "symbols": ["AAPL"],
                "start_date": "2010-01-01T00:00:00Z",
                "end_date": "2011-01-01",
                **args,
            },
        }
    )


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ({"hold_days": -5}, "args.hold_days=-5 is out of range; use 1 to 10000 or null"),
        ({"entry": "bogus"}, "args.entry='bogus' is not allowed; use one of next_open, close"),
        ({"exit_on": "later"}, "args.exit_on='later' is not allowed; use one of next_open, close"),
        ({"trailing_stop_pct": -1}, "args.trailing_stop_pct=-1.0 is out of range; use a percent"),
        ({"max_positions": 0}, "args.max_positions=0 is out of range; use 1 to"),
        ({"max_entries_per_ticker": "two"}, "args.max_entries_per_ticker='two' is not a whole"),
        ({"commission_bps": 9000}, "args.commission_bps=9000.0 is out of range; use basis points"),
        ({"lookback_sessions": -1}, "args.lookback_sessions=-1 is not allowed; use a whole number"),
        ({"lookback_sessions": 1.5}, "args.lookback_sessions=1.5 is not allowed"),
        ({"benchmark": 5}, "args.benchmark must be a ticker string such as 'SPY', got 5"),
        ({"benchmark": ""}, "args.benchmark must be a ticker string"),
    ],
)
def test_bad_trade_args_are_refused_at_parse_time(args: dict[str, Any], needle: str) -> None:
    with pytest.raises(MalformedTask) as info:
        parse_task(backtest_message(**args))
    assert needle in str(info.value)
    assert info.value.task_id == "t-1"  # the producer hears back under its id


def test_parsed_backtest_carries_the_model_lookback_and_benchmark() -> None:
    task = parse_task(
        backtest_message(
            hold_days=None, exit_on="close", trailing_stop_pct="7.5", benchmark=" spy ",
            lookback_sessions=20, max_entries_per_ticker=0,
        )
    )  # fmt: skip
    assert isinstance(task.args, BacktestArgs)
    assert task.args.model == TradeModel(
        hold_days=None, exit_on="close", trailing_stop_pct=7.5, max_entries_per_ticker=0
    )
    assert (task.args.lookback_sessions, task.args.benchmark) == (20, "SPY")
    defaults = parse_task(backtest_message())
    assert isinstance(defaults.args, BacktestArgs)
    assert defaults.args.model == TradeModel()
    assert (defaults.args.lookback_sessions, defaults.args.benchmark) == (252, None)


def test_parsing_a_task_imports_neither_numpy_nor_pandas() -> None:
    code = (
        "import sys; import strategyq.client, strategyq.protocol.task; "
        "print('numpy' in sys.modules or 'pandas' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
