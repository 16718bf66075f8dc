"""TradeModel.from_args: defaults, coercion and clear validation messages."""

from __future__ import annotations

import pytest

from strategyq.engine import TradeModel
from strategyq.errors import TaskValidationError


def test_defaults_when_args_are_absent_or_null() -> None:
    model = TradeModel.from_args({"strategy_code": "x", "symbols": ["A"], "stop_loss_pct": None})
    assert model == TradeModel()
    assert model.cost_per_side == 0.0
    assert model.hold_days == "auto" and model.holding_limit == 1


def test_hold_days_null_means_no_limit_and_auto_follows_exits() -> None:
    assert TradeModel.from_args({"hold_days": None}).hold_days is None
    assert TradeModel.from_args({"hold_days": "none"}).hold_days is None
    assert TradeModel().resolved(has_exits=True).hold_days is None
    assert TradeModel().resolved(has_exits=False).hold_days == 1
    assert TradeModel(hold_days=3).resolved(has_exits=True).hold_days == 3


def test_args_are_read_and_coerced() -> None:
    model = TradeModel.from_args(
        {"entry": "close", "hold_days": 5.0, "stop_loss_pct": "5", "take_profit_pct": 10,
         "commission_bps": 1, "slippage_bps": 2.5, "initial_capital": 5e4, "max_positions": "3"}
    )  # fmt: skip
    assert model == TradeModel("close", 5, 5.0, 10.0, 1.0, 2.5, 50_000.0, 3)
    assert model.cost_per_side == pytest.approx(3.5e-4)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        ({"entry": "open"}, "entry='open' is not allowed; use one of next_open, close"),
        ({"hold_days": 0}, "hold_days=0 is out of range; use 1 to"),
        ({"hold_days": 1.5}, "hold_days=1.5 is not a whole number"),
        ({"hold_days": True}, "hold_days=True is not a whole number"),
        ({"max_positions": "many"}, "max_positions='many' is not a whole number"),
        ({"stop_loss_pct": -1}, "stop_loss_pct=-1.0 is out of range"),
        ({"stop_loss_pct": 0}, "stop_loss_pct=0 is not allowed"),
        ({"take_profit_pct": "x"}, "take_profit_pct='x' is not a number"),
        ({"commission_bps": float("nan")}, "commission_bps=nan is out of range"),
        ({"initial_capital": 0}, "initial_capital=0 is not allowed"),
        ({"hold_days": -5}, "hold_days=-5 is out of range; use 1 to 10000 or null for no limit"),
        ({"exit_on": "open"}, "exit_on='open' is not allowed; use one of next_open, close"),
        ({"trailing_stop_pct": 0}, "trailing_stop_pct=0 is not allowed"),
        ({"trailing_stop_pct": -2}, "trailing_stop_pct=-2.0 is out of range"),
        ({"max_entries_per_ticker": -1}, "max_entries_per_ticker=-1 is out of range; use 0 to"),
    ],
)
def test_bad_args_name_field_value_and_allowed(args: dict[str, object], needle: str) -> None:
    with pytest.raises(TaskValidationError) as info:
        TradeModel.from_args(args)
    assert needle in str(info.value)
