"""Hand-computed trades: entries, exits, stops, gaps, costs and the data's edges."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest

from strategyq.engine import TradeModel, run_backtest
from strategyq.errors import DataError

# Business days from Monday 2024-01-01: index 0 = 01-01, 1 = 01-02, ... 5 = 01-08.
DAYS = pd.bdate_range("2024-01-01", periods=40)


def bars(ticker: str, ohlc: list[tuple[float, float, float, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ticker": ticker,
            "date": DAYS[: len(ohlc)],
            "open": [r[0] for r in ohlc],
            "high": [r[1] for r in ohlc],
            "low": [r[2] for r in ohlc],
            "close": [r[3] for r in ohlc],
            "volume": 1_000.0,
        }
    )


def flat(ticker: str, n: int, price: float = 100.0) -> list[tuple[float, float, float, float]]:
    return [(price, price + 1, price - 1, price)] * n


def assert_plain_json(value: Any) -> None:
    """Only Python builtins, no NaN/inf, round-trips through strict JSON."""
    json.dumps(value, allow_nan=False)
    if isinstance(value, dict):
        for key, item in value.items():
            assert type(key) is str
            assert_plain_json(item)
    elif isinstance(value, list):
        for item in value:
            assert_plain_json(item)
    else:
        assert value is None or type(value) in (bool, int, float, str), type(value)


def backtest(instances: Any, df: pd.DataFrame, **model: Any) -> dict[str, Any]:
    result = run_backtest(instances, df, TradeModel(**model), start=None, end=None)
    assert_plain_json(result)
    return result


def only_trade(result: dict[str, Any]) -> dict[str, Any]:
    assert len(result["trades"]) == 1, result["trades"]
    trade: dict[str, Any] = result["trades"][0]
    return trade


def test_one_long_trade_enters_next_open_exits_that_close() -> None:
    df = bars("AAA", [(10, 11, 9, 10), (20, 23, 19, 22), (30, 31, 29, 30)])
    trade = only_trade(backtest([{"ticker": "AAA", "date": "2024-01-01"}], df))
    assert trade["entry_date"] == "2024-01-02" and trade["entry_price"] == 20
    assert trade["exit_date"] == "2024-01-02" and trade["exit_price"] == 22
    assert trade["return"] == pytest.approx(0.10)
    assert trade["exit_reason"] == "hold" and trade["holding_sessions"] == 1


def test_long_trade_pnl_is_a_tenth_of_equity_times_return() -> None:
    df = bars("AAA", [(10, 11, 9, 10), (20, 23, 19, 22), (30, 31, 29, 30)])
    result = backtest([{"ticker": "AAA", "date": "2024-01-01"}], df)
    trade = only_trade(result)
    assert trade["pnl"] == pytest.approx(100_000 / 10 * 0.10)
    assert result["equity_curve"]["values"] == pytest.approx([100_000, 101_000, 101_000])
    assert result["performance_metrics"]["total_return"] == pytest.approx(0.01)
    assert result["performance_metrics"]["exposure"] == pytest.approx(1 / 3)


def test_one_short_trade() -> None:
    df = bars("AAA", [(10, 11, 9, 10), (20, 21, 17, 18), (30, 31, 29, 30)])
    instance = {"ticker": "AAA", "date": "2024-01-01", "direction": "SHORT"}
    trade = only_trade(backtest([instance], df))
    assert trade["direction"] == "short"
    assert trade["return"] == pytest.approx((20 - 18) / 20)


def test_close_entry_holds_for_hold_days() -> None:
    df = bars("AAA", [(10, 11, 9, 10), (11, 12, 10, 11), (12, 13, 11, 12), (13, 14, 12, 15)])
    trade = only_trade(
        backtest([{"ticker": "AAA", "date": "2024-01-01"}], df, entry="close", hold_days=3)
    )
    assert (trade["entry_date"], trade["entry_price"]) == ("2024-01-01", 10)
    assert (trade["exit_date"], trade["exit_price"]) == ("2024-01-04", 15)
    assert trade["return"] == pytest.approx(0.5)
    assert trade["holding_sessions"] == 3


HOLD3 = {"hold_days": 3, "stop_loss_pct": 5.0, "take_profit_pct": 10.0}


def held(second: tuple[float, float, float, float]) -> pd.DataFrame:
    """Signal on day 0, entry at 100 on day 1, the tested session is day 2, exit day 3 at 101."""
    return bars("AAA", [(50, 51, 49, 50), (100, 102, 98, 100), second, (101, 102, 100, 101)])


SIGNAL = [{"ticker": "AAA", "date": "2024-01-01"}]


def test_stop_loss_hit_fills_at_the_stop() -> None:
    trade = only_trade(backtest(SIGNAL, held((99, 100, 94, 96)), **HOLD3))
    assert (trade["exit_reason"], trade["exit_price"], trade["exit_date"]) == (
        "stop_loss", pytest.approx(95.0), "2024-01-03",
    )  # fmt: skip
    assert trade["return"] == pytest.approx(-0.05)
    assert trade["holding_sessions"] == 2


def test_take_profit_hit_fills_at_the_target() -> None:
    trade = only_trade(backtest(SIGNAL, held((101, 111, 99, 108)), **HOLD3))
    assert (trade["exit_reason"], trade["exit_price"]) == ("take_profit", pytest.approx(110.0))
    assert trade["return"] == pytest.approx(0.10)


def test_session_touching_both_levels_counts_the_stop() -> None:
    trade = only_trade(backtest(SIGNAL, held((100, 111, 94, 100)), **HOLD3))
    assert (trade["exit_reason"], trade["exit_price"]) == ("stop_loss", pytest.approx(95.0))


def test_gap_through_the_stop_fills_at_the_open() -> None:
    trade = only_trade(backtest(SIGNAL, held((90, 92, 88, 91)), **HOLD3))
    assert (trade["exit_reason"], trade["exit_price"]) == ("stop_loss", 90)
    assert trade["return"] == pytest.approx(-0.10)


def test_gap_over_the_target_fills_at_the_open() -> None:
    trade = only_trade(backtest(SIGNAL, held((115, 118, 114, 116)), **HOLD3))
    assert (trade["exit_reason"], trade["exit_price"]) == ("take_profit", 115)


def test_no_level_touched_exits_at_the_planned_close() -> None:
    trade = only_trade(backtest(SIGNAL, held((100, 104, 96, 103)), **HOLD3))
    assert (trade["exit_reason"], trade["exit_price"], trade["exit_date"]) == (
        "hold", 101, "2024-01-04",
    )  # fmt: skip


def test_entry_session_range_is_checked_for_next_open() -> None:
    df = bars("AAA", [(50, 51, 49, 50), (100, 101, 94, 97), (97, 98, 96, 97)])
    trade = only_trade(backtest(SIGNAL, df, hold_days=2, stop_loss_pct=5.0))
    assert (trade["exit_reason"], trade["exit_date"]) == ("stop_loss", "2024-01-02")


def test_short_stop_is_above_the_entry() -> None:
    instance = [{"ticker": "AAA", "date": "2024-01-01", "direction": "short"}]
    trade = only_trade(backtest(instance, held((101, 106, 100, 104)), **HOLD3))
    assert (trade["exit_reason"], trade["exit_price"]) == ("stop_loss", pytest.approx(105.0))
    assert trade["return"] == pytest.approx(-0.05)


def test_short_gap_down_through_target_fills_at_open() -> None:
    instance = [{"ticker": "AAA", "date": "2024-01-01", "direction": "short"}]
    trade = only_trade(backtest(instance, held((85, 88, 84, 86)), **HOLD3))
    assert (trade["exit_reason"], trade["exit_price"]) == ("take_profit", 85)
    assert trade["return"] == pytest.approx(0.15)


def test_costs_come_off_both_sides() -> None:
    df = bars("AAA", [(10, 11, 9, 10), (100, 111, 99, 110), (30, 31, 29, 30)])
    trade = only_trade(backtest(SIGNAL, df, commission_bps=10, slippage_bps=5))
    k = 15 / 10_000
    assert trade["return"] == pytest.approx(110 * (1 - k) / (100 * (1 + k)) - 1)
    short = only_trade(backtest([{**SIGNAL[0], "direction": "short"}], df, commission_bps=15))
    assert short["return"] == pytest.approx((100 * (1 - k) - 110 * (1 + k)) / (100 * (1 - k)))


def test_signal_on_last_session_makes_no_next_open_trade() -> None:
    df = bars("AAA", flat("AAA", 3))
    result = backtest([{"ticker": "AAA", "date": "2024-01-03"}], df)
    assert result["trades"] == []
    assert result["summary"]["signals_without_next_session"] == 1
    assert any("no next session" in w for w in result["warnings"])


def test_signal_on_last_session_with_close_entry_closes_at_data_end() -> None:
    df = bars("AAA", flat("AAA", 3))
    result = backtest(
        [{"ticker": "AAA", "date": "2024-01-03"}], df, entry="close", commission_bps=10
    )
    trade = only_trade(result)
    assert trade["exit_reason"] == "data_end" and trade["holding_sessions"] == 0
    assert result["summary"]["trades_closed_at_data_end"] == 1
    assert sum(t["pnl"] for t in result["trades"]) == pytest.approx(
        result["summary"]["final_equity"] - 100_000
    )


def test_exit_past_the_data_closes_at_last_close_and_is_flagged() -> None:
    df = bars("AAA", [(10, 11, 9, 10), (20, 21, 19, 20), (21, 23, 20, 22)])
    result = backtest(SIGNAL, df, hold_days=5)
    trade = only_trade(result)
    assert (trade["exit_reason"], trade["exit_date"], trade["exit_price"]) == (
        "data_end", "2024-01-03", 22,
    )  # fmt: skip
    assert result["summary"]["trades_closed_at_data_end"] == 1


def test_signal_on_weekend_enters_next_session() -> None:
    df = bars("AAA", [(10, 11, 9, 10)] * 5 + [(20, 21, 19, 21)])
    trade = only_trade(backtest([{"ticker": "AAA", "date": "2024-01-06"}], df))
    assert (trade["entry_date"], trade["entry_price"]) == ("2024-01-08", 20)


def frames(*parts: pd.DataFrame) -> pd.DataFrame:
    return pd.concat(parts, ignore_index=True)


def test_more_signals_than_slots_take_the_best_scores_then_ticker() -> None:
    df = frames(*(bars(t, flat(t, 4)) for t in ("AAA", "BBB", "CCC", "DDD")))
    day = "2024-01-01"
    instances = [
        {"ticker": "AAA", "date": day, "score": 1.0},
        {"ticker": "BBB", "date": day, "score": 3.0},
        {"ticker": "CCC", "date": day},
        {"ticker": "DDD", "date": day, "score": 3.0},
    ]
    result = backtest(instances, df, max_positions=2, hold_days=2)
    assert [t["ticker"] for t in result["trades"]] == ["BBB", "DDD"]
    assert result["summary"]["signals_skipped_max_positions"] == 2


def test_slot_frees_after_exit_session() -> None:
    df = frames(bars("AAA", flat("AAA", 6)), bars("BBB", flat("BBB", 6)))
    instances = [
        {"ticker": "AAA", "date": "2024-01-01"},  # held 01-02..01-03
        {"ticker": "BBB", "date": "2024-01-02"},  # wants 01-03: slot busy
        {"ticker": "BBB", "date": "2024-01-03"},  # enters 01-04: slot free again
    ]
    result = backtest(instances, df, max_positions=1, hold_days=2)
    assert [(t["ticker"], t["entry_date"]) for t in result["trades"]] == [
        ("AAA", "2024-01-02"),
        ("BBB", "2024-01-04"),
    ]


def test_second_trade_is_sized_on_compounded_equity() -> None:
    df = bars("AAA", [(10, 10, 10, 10), (10, 11, 10, 11), (11, 11, 11, 11), (11, 12, 11, 12.1)])
    instances = [{"ticker": "AAA", "date": "2024-01-01"}, {"ticker": "AAA", "date": "2024-01-03"}]
    result = backtest(instances, df, max_positions=1)
    first, second = result["trades"]
    assert first["pnl"] == pytest.approx(10_000)
    assert second["pnl"] == pytest.approx(110_000 * 0.1)
    assert result["summary"]["final_equity"] == pytest.approx(121_000)


def test_empty_instance_list_gives_defined_metrics() -> None:
    df = bars("AAA", [(10, 11, 9, 10), (12, 13, 11, 12)])
    result = backtest([], df)
    metrics = result["performance_metrics"]
    assert metrics["num_trades"] == 0
    assert metrics["total_return"] == 0.0 and metrics["max_drawdown"] == 0.0
    assert metrics["exposure"] == 0.0 and metrics["cagr"] == 0.0
    for name in ("win_rate", "avg_return", "sharpe_ratio", "sortino_ratio", "profit_factor"):
        assert metrics[name] is None
    assert metrics["benchmark_return"] == pytest.approx(0.2)
    assert result["summary"]["total_instances"] == 0
    assert result["equity_curve"] == {"dates": ["2024-01-01", "2024-01-02"], "values": [1e5, 1e5]}


def test_empty_frame_and_no_instances() -> None:
    df = bars("AAA", []).astype({"open": float, "high": float, "low": float, "close": float})
    result = backtest([], df)
    assert result["performance_metrics"]["num_trades"] == 0
    assert result["summary"]["symbols_processed"] == 0


def test_range_limits_signals_and_curve() -> None:
    df = bars("AAA", flat("AAA", 10))
    instances = [{"ticker": "AAA", "date": "2024-01-01"}, {"ticker": "AAA", "date": "2024-01-04"}]
    result = run_backtest(
        instances, df, TradeModel(), start="2024-01-03T00:00:00Z", end="2024-01-09T23:59:59"
    )
    assert result["summary"]["date_range"] == ["2024-01-03T00:00:00", "2024-01-09T23:59:59"]
    assert result["equity_curve"]["dates"][0] == "2024-01-03"
    assert result["equity_curve"]["dates"][-1] == "2024-01-09"
    assert [t["signal_date"] for t in result["trades"]] == ["2024-01-04"]
    assert result["summary"]["signals_before_start"] == 1
    assert result["summary"]["signals_outside_data"] == 0


def test_metrics_by_hand_for_two_trades() -> None:
    df = bars("AAA", [(10, 10, 10, 10), (10, 12, 10, 12), (12, 12, 12, 12), (12, 12, 9, 9)])
    instances = [{"ticker": "AAA", "date": "2024-01-01"}, {"ticker": "AAA", "date": "2024-01-03"}]
    metrics = backtest(instances, df, max_positions=1)["performance_metrics"]
    # +20 % then -25 %: equity 100k → 120k → 90k.
    assert metrics["win_rate"] == 0.5
    assert metrics["avg_return"] == pytest.approx(-0.025)
    assert metrics["median_return"] == pytest.approx(-0.025)
    assert (metrics["best_trade"], metrics["worst_trade"]) == (
        pytest.approx(0.2),
        pytest.approx(-0.25),
    )
    assert metrics["profit_factor"] == pytest.approx(20_000 / 30_000)
    assert metrics["expectancy"] == pytest.approx(-5_000)
    assert metrics["total_return"] == pytest.approx(-0.10)
    assert metrics["max_drawdown"] == pytest.approx(-0.25)
    daily = np.array([0.0, 0.2, 0.0, -0.25])
    assert metrics["sharpe_ratio"] == pytest.approx(
        daily.mean() / daily.std(ddof=1) * math.sqrt(252)
    )
    downside = math.sqrt(np.mean(np.minimum(daily, 0) ** 2))
    assert metrics["sortino_ratio"] == pytest.approx(daily.mean() / downside * math.sqrt(252))
    assert metrics["exposure"] == 0.5 and metrics["avg_holding_sessions"] == 1.0
    assert metrics["cagr"] == pytest.approx(0.9 ** (365.25 / 3) - 1)


def test_unsorted_frame_is_sorted_first() -> None:
    df = frames(
        bars("BBB", flat("BBB", 3)), bars("AAA", [(10, 11, 9, 10), (20, 23, 19, 22), (1, 1, 1, 1)])
    )
    shuffled = df.sample(frac=1.0, random_state=3).reset_index(drop=True)
    trade = only_trade(backtest(SIGNAL, shuffled))
    assert (trade["entry_price"], trade["exit_price"]) == (20, 22)


def test_duplicate_session_rows_are_a_data_error() -> None:
    df = bars("AAA", flat("AAA", 3))
    with pytest.raises(DataError, match="two rows for AAA on 2024-01-02"):
        backtest(SIGNAL, frames(df, df.iloc[[1]]))
