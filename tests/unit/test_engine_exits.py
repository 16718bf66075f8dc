"""Hand-computed cases for exits, trailing stops, weights, warm-up rows and a benchmark ticker."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from strategyq.engine import TradeModel, run_backtest
from strategyq.errors import DataError, EngineError
from tests.unit.test_engine_trades import assert_plain_json

# Business days from Monday 2024-01-01: index 0 = 01-01, 1 = 01-02, ... 5 = 01-08.
DAYS = pd.bdate_range("2024-01-01", periods=40)


def day(i: int) -> str:
    return str(DAYS[i].date())


def bars(
    ticker: str, ohlc: list[tuple[float, float, float, float]], skip: int = -1
) -> pd.DataFrame:
    frame = pd.DataFrame(
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
    return frame.drop(index=skip).reset_index(drop=True) if skip >= 0 else frame


def rising(ticker: str, n: int, base: float = 100.0) -> pd.DataFrame:
    """Open base+i, high +2, low −1, close +1 on session i."""
    return bars(ticker, [(base + i, base + i + 2, base + i - 1, base + i + 1) for i in range(n)])


def backtest(instances: Any, df: pd.DataFrame, **model: Any) -> dict[str, Any]:
    result = run_backtest(instances, df, TradeModel(**model), start=None, end=None)
    assert_plain_json(result)
    return result


def entry(i: int, ticker: str = "AAA", **extra: Any) -> dict[str, Any]:
    return {"ticker": ticker, "date": day(i), **extra}


def leave(i: int, ticker: str = "AAA", **extra: Any) -> dict[str, Any]:
    return {"ticker": ticker, "date": day(i), "action": "exit", **extra}


def test_exit_at_next_open() -> None:
    result = backtest([entry(1), leave(3)], rising("AAA", 10))
    (trade,) = result["trades"]
    # Enter at the open of 01-03 (102), exit at the open of 01-05 (104).
    assert (trade["entry_date"], trade["entry_price"]) == (day(2), 102.0)
    assert (trade["exit_date"], trade["exit_price"]) == (day(4), 104.0)
    assert trade["exit_reason"] == "exit_signal" and trade["exit_instance_index"] == 1
    assert trade["holding_sessions"] == 3
    assert trade["return"] == pytest.approx(104 / 102 - 1, rel=1e-12)
    summary = result["summary"]
    assert summary["trade_model"]["hold_days"] is None  # auto → no limit when exits exist
    assert summary["exits_without_position"] == 0
    # Held on 01-03, 01-04 and 01-05 (exit at its open): 3 of 10 sessions.
    assert result["performance_metrics"]["exposure"] == pytest.approx(0.3)


def test_exit_at_close() -> None:
    result = backtest([entry(1), leave(3)], rising("AAA", 10), exit_on="close")
    (trade,) = result["trades"]
    assert (trade["exit_date"], trade["exit_price"]) == (day(3), 104.0)
    assert trade["holding_sessions"] == 2


def test_exit_with_no_position_is_counted_not_an_error() -> None:
    result = backtest([leave(2), entry(4), leave(4)], rising("AAA", 10))
    summary = result["summary"]
    # The exit on 01-05 fills at the open of 01-08, the same instant the entry fills:
    # it closes nothing, and the position runs to the data's end.
    assert summary["exits_without_position"] == 2
    (trade,) = result["trades"]
    assert trade["exit_reason"] == "data_end" and trade["exit_date"] == day(9)
    assert any("exit signal(s) found no open position" in w for w in result["warnings"])


def test_an_exit_at_the_open_comes_before_a_stop_on_that_session() -> None:
    ohlc = [(100, 101, 99, 100)] * 3 + [(99, 100, 80, 85)] + [(85, 86, 84, 85)] * 3
    df = bars("AAA", ohlc)
    # Enter at the open of 01-02 (100); exit signal on 01-03 fills at the open of 01-04 (99),
    # before that session's low (80) reaches the 10 % stop (90).
    result = backtest([entry(0), leave(2)], df, stop_loss_pct=10.0)
    (trade,) = result["trades"]
    assert (trade["exit_reason"], trade["exit_price"], trade["exit_date"]) == (
        "exit_signal", 99.0, day(3)
    )  # fmt: skip


def test_a_stop_during_the_session_comes_before_an_exit_at_its_close() -> None:
    ohlc = [(100, 101, 99, 100)] * 3 + [(99, 100, 80, 85)] + [(85, 86, 84, 85)] * 3
    result = backtest([entry(0), leave(3)], bars("AAA", ohlc), stop_loss_pct=10.0, exit_on="close")
    (trade,) = result["trades"]
    assert (trade["exit_reason"], trade["exit_price"], trade["exit_date"]) == (
        "stop_loss", 90.0, day(3)
    )  # fmt: skip
    assert result["summary"]["exits_without_position"] == 1


def test_a_second_entry_while_open_is_ignored_and_counted() -> None:
    result = backtest([entry(1), entry(2), leave(4), entry(6)], rising("AAA", 12))
    trades = result["trades"]
    assert [t["signal_date"] for t in trades] == [day(1), day(6)]
    assert result["summary"]["entries_ignored_position_open"] == 1
    assert trades[0]["exit_date"] == day(5) and trades[1]["exit_reason"] == "data_end"


def test_two_entries_per_ticker_and_one_exit_closes_both() -> None:
    result = backtest(
        [entry(1), entry(2), entry(3), leave(4)], rising("AAA", 12), max_entries_per_ticker=2
    )
    trades = result["trades"]
    assert [t["signal_date"] for t in trades] == [day(1), day(2)]
    assert all(t["exit_date"] == day(5) and t["exit_reason"] == "exit_signal" for t in trades)
    assert result["summary"]["entries_ignored_position_open"] == 1


def test_hold_days_is_a_maximum_when_exits_exist() -> None:
    result = backtest([entry(1), leave(6), entry(8)], rising("AAA", 12), hold_days=2)
    first, second = result["trades"]
    assert (first["exit_reason"], first["exit_date"]) == ("hold", day(3))
    assert (second["exit_reason"], second["exit_date"]) == ("hold", day(10))
    assert result["summary"]["exits_without_position"] == 1


def test_short_exits_close_shorts_only() -> None:
    df = rising("AAA", 10)
    result = backtest(
        [entry(1, direction="short"), leave(2), leave(4, direction="SHORT")],
        df,
        max_entries_per_ticker=2,
    )
    (trade,) = result["trades"]
    assert trade["direction"] == "short" and trade["exit_date"] == day(5)
    assert trade["return"] == pytest.approx((102 - 105) / 102, rel=1e-12)
    assert result["summary"]["exits_without_position"] == 1  # the long exit on 01-03


def test_boolean_entry_exit_columns_like_vectorbt() -> None:
    df = rising("AAA", 10)
    frame = pd.DataFrame(
        {
            "ticker": "AAA",
            "date": DAYS[:10],
            "entry": [False, True, True, False, False, False, True, False, False, False],
            "exit": [False, False, False, False, True, False, False, False, True, False],
        }
    )
    result = backtest(frame, df)
    assert [(t["signal_date"], t["exit_date"]) for t in result["trades"]] == [
        (day(1), day(5)),
        (day(6), day(9)),
    ]
    summary = result["summary"]
    assert summary["total_instances"] == 5
    assert (summary["entry_signals"], summary["exit_signals"]) == (3, 2)
    assert summary["entries_ignored_position_open"] == 1
    assert {i["action"] for i in result["instances"]} == {"entry", "exit"}


@pytest.mark.parametrize(
    ("instance", "needle"),
    [
        ({"ticker": "AAA", "date": "2024-01-02", "signal": "exit"}, "use 'action': 'exit'"),
        ({"ticker": "AAA", "date": "2024-01-02", "signal": "SELL"}, "use 'action': 'exit'"),
        ({"ticker": "AAA", "date": "2024-01-02", "signal": "short"}, "'direction': 'short'"),
        ({"ticker": "AAA", "date": "2024-01-02", "action": "close"}, "field 'action' is 'close'"),
        ({"ticker": "AAA", "date": "2024-01-02", "weight": -0.5}, "field 'weight' is -0.5"),
        ({"ticker": "AAA", "date": "2024-01-02", "weight": "half"}, "field 'weight' is 'half'"),
    ],
)
def test_exit_like_signals_and_bad_fields_are_refused(
    instance: dict[str, Any], needle: str
) -> None:
    with pytest.raises(EngineError) as info:
        backtest([instance], rising("AAA", 5))
    assert needle in str(info.value) and "instance 0" in str(info.value)


def test_signal_false_on_an_exit_is_no_exit() -> None:
    result = backtest([entry(1), leave(3, signal=False)], rising("AAA", 10))
    (trade,) = result["trades"]
    # No active exit: hold_days keeps its default of one session.
    assert (trade["exit_reason"], trade["exit_date"]) == ("hold", day(2))
    assert result["summary"]["exit_signals"] == 0
    assert result["summary"]["trade_model"]["hold_days"] == 1


def test_trailing_stop_follows_the_highest_close() -> None:
    ohlc = [
        (100, 101, 99, 100),  # 01-01 signal
        (100, 106, 99, 105),  # 01-02 entry at 100; level 90 → close 105
        (105, 121, 104, 120),  # 01-03 level 94.5 → close 120
        (119, 119, 110, 112),  # 01-04 level 108: low 110 does not touch
        (111, 112, 100, 101),  # 01-05 level 108: low 100 touches → fill at 108
        (101, 102, 100, 101),
    ]
    result = backtest([entry(0)], bars("AAA", ohlc), hold_days=None, trailing_stop_pct=10.0)
    (trade,) = result["trades"]
    assert (trade["exit_reason"], trade["exit_date"]) == ("trailing_stop", day(4))
    assert trade["exit_price"] == pytest.approx(108.0, rel=1e-12)


def test_trailing_stop_gap_fills_at_the_open_and_the_fixed_stop_wins_when_tighter() -> None:
    ohlc = [
        (100, 101, 99, 100),
        (100, 111, 99, 110),  # close 110 → trailing level 99 from 01-03 on
        (95, 96, 90, 92),  # opens below 99: fills at the open
        (92, 93, 91, 92),
    ]
    (trade,) = backtest([entry(0)], bars("AAA", ohlc), trailing_stop_pct=10.0, hold_days=None)[
        "trades"
    ]
    assert (trade["exit_reason"], trade["exit_price"]) == ("trailing_stop", 95.0)
    # A 2 % fixed stop (98) is tighter than the first trailing level (90): it is a stop loss.
    ohlc2 = [(100, 101, 99, 100), (100, 101, 97, 99), (99, 100, 98, 99)]
    (trade,) = backtest(
        [entry(0)], bars("AAA", ohlc2), trailing_stop_pct=10.0, stop_loss_pct=2.0, hold_days=None
    )["trades"]
    assert (trade["exit_reason"], trade["exit_price"]) == ("stop_loss", 98.0)


def test_trailing_stop_for_a_short_trails_the_lowest_close() -> None:
    ohlc = [
        (100, 101, 99, 100),
        (100, 101, 94, 95),  # short at 100; close 95 → level 95 · 1.05 = 99.75
        (96, 100, 95, 97),  # high 100 touches 99.75
        (97, 98, 96, 97),
    ]
    result = backtest(
        [entry(0, direction="short")], bars("AAA", ohlc), trailing_stop_pct=5.0, hold_days=None
    )
    (trade,) = result["trades"]
    assert trade["exit_reason"] == "trailing_stop" and trade["exit_date"] == day(2)
    assert trade["exit_price"] == pytest.approx(99.75, rel=1e-12)
    assert trade["return"] == pytest.approx((100 - 99.75) / 100, rel=1e-12)


def test_weights_below_the_cap_size_each_trade() -> None:
    df = pd.concat([rising("AAA", 6), rising("BBB", 6, base=50.0)], ignore_index=True)
    result = backtest(
        [entry(1, weight=0.25), entry(1, "BBB", weight=0.5)], df, hold_days=2, max_positions=10
    )
    by_ticker = {t["ticker"]: t for t in result["trades"]}
    assert result["summary"]["sizing"] == "weight"
    for ticker, weight in (("AAA", 0.25), ("BBB", 0.5)):
        trade = by_ticker[ticker]
        assert trade["weight"] == weight
        assert trade["pnl"] == pytest.approx(100_000 * weight * trade["return"], rel=1e-12)
    final = 100_000 + sum(t["pnl"] for t in result["trades"])
    assert result["summary"]["final_equity"] == pytest.approx(final, rel=1e-12)


def test_weights_above_the_cap_are_capped_then_scaled_then_skipped() -> None:
    df = pd.concat([rising(t, 8) for t in ("AAA", "BBB", "CCC", "DDD")], ignore_index=True)
    instances = [
        entry(1, "AAA", weight=0.7, score=3),
        entry(1, "BBB", weight=0.6, score=2),  # only 0.3 left: cut to 0.3
        entry(1, "CCC", weight=0.2, score=1),  # nothing left: skipped
        entry(4, "DDD", weight=1.5),  # after the others left: capped at 1
    ]
    result = backtest(instances, df, hold_days=2)
    weights = {t["ticker"]: t["weight"] for t in result["trades"]}
    assert weights == pytest.approx({"AAA": 0.7, "BBB": 0.3, "DDD": 1.0})
    summary = result["summary"]
    assert summary["entries_scaled_to_exposure"] == 1
    assert summary["entries_skipped_no_exposure"] == 1
    assert summary["weights_capped"] == 1


def test_without_weights_the_slot_model_is_unchanged() -> None:
    df = rising("AAA", 6)
    result = backtest([entry(1)], df, max_positions=4)
    (trade,) = result["trades"]
    assert "weight" not in trade and result["summary"]["sizing"] == "slots"
    assert trade["pnl"] == pytest.approx(100_000 / 4 * trade["return"], rel=1e-15)


def test_warm_up_rows_never_trade_and_are_counted() -> None:
    df = rising("AAA", 12)
    instances = [entry(1), leave(2), entry(3), entry(6), leave(8)]
    result = run_backtest(instances, df, TradeModel(), start=pd.Timestamp(DAYS[5]), end=None)
    summary = result["summary"]
    assert summary["signals_before_start"] == 3
    (trade,) = result["trades"]
    assert (trade["signal_date"], trade["entry_date"], trade["exit_date"]) == (
        day(6), day(7), day(9)
    )  # fmt: skip
    assert result["equity_curve"]["dates"][0] == day(5)


def test_exposure_counts_sessions_a_held_ticker_has_no_bar_on() -> None:
    # 8 business days; A trades all of them, B lacks 2024-01-04.
    df = pd.concat(
        [bars("A", [(10, 11, 9, 10)] * 8), bars("B", [(20, 21, 19, 20)] * 8, skip=3)],
        ignore_index=True,
    )
    result = backtest([entry(1, "B")], df, hold_days=3)
    (trade,) = result["trades"]
    assert (trade["entry_date"], trade["exit_date"]) == (day(2), day(5))
    assert result["performance_metrics"]["exposure"] == 0.5


def test_a_benchmark_ticker_with_a_missing_session() -> None:
    df = rising("AAA", 6)
    closes = [100.0, 102.0, 101.0, 105.0, 104.0, 108.0]
    bench = bars("SPY", [(c, c, c, c) for c in closes], skip=2)  # no bar on 01-03
    result = run_backtest(
        [entry(0)], df, TradeModel(hold_days=3), start=None, end=None, benchmark=bench,
        benchmark_symbol="SPY",
    )  # fmt: skip
    assert_plain_json(result)
    metrics = result["performance_metrics"]
    assert result["summary"]["benchmark"] == {"type": "ticker", "ticker": "SPY"}
    assert metrics["benchmark_return"] == pytest.approx(108 / 100 - 1, rel=1e-12)
    seen = [100.0, 102.0, 102.0, 105.0, 104.0, 108.0]  # 01-03 carries 01-02's close
    curve = result["benchmark_curve"]
    assert curve["dates"] == result["equity_curve"]["dates"]
    assert curve["values"] == pytest.approx([100_000 * c / 100 for c in seen])
    equity = np.array(result["equity_curve"]["values"])
    mine = equity[1:] / equity[:-1] - 1
    theirs = np.array(seen[1:]) / np.array(seen[:-1]) - 1
    beta = np.cov(mine, theirs, ddof=1)[0, 1] / np.var(theirs, ddof=1)
    assert metrics["beta"] == pytest.approx(beta, rel=1e-9)
    assert metrics["alpha"] == pytest.approx((mine.mean() - beta * theirs.mean()) * 252, rel=1e-9)
    assert metrics["correlation"] == pytest.approx(np.corrcoef(mine, theirs)[0, 1], rel=1e-9)


def test_without_a_benchmark_ticker_the_default_is_labelled() -> None:
    result = backtest([entry(0)], rising("AAA", 6))
    assert result["summary"]["benchmark"] == {"type": "equal_weight_buy_and_hold", "symbols": 1}
    assert result["benchmark_curve"] is None
    metrics = result["performance_metrics"]
    assert metrics["benchmark_return"] == pytest.approx(106 / 101 - 1, rel=1e-12)
    assert metrics["alpha"] is None and metrics["beta"] is None


def test_a_benchmark_without_bars_in_the_range_is_a_data_error() -> None:
    bench = rising("SPY", 3)
    with pytest.raises(DataError, match="benchmark 'QQQ' has no bars"):
        run_backtest(
            [entry(0)], rising("AAA", 6), TradeModel(), start=None, end=None, benchmark=bench,
            benchmark_symbol="QQQ",
        )  # fmt: skip


def test_new_metrics_by_hand() -> None:
    # +20 % then −25 % then +10 %: equity 100k → 120k → 90k → 99k, one trade at a time.
    df = bars(
        "AAA",
        [(10, 10, 10, 10), (10, 12, 10, 12), (12, 12, 12, 12), (12, 12, 9, 9), (9, 9, 9, 9),
         (9, 9.9, 9, 9.9), (9.9, 9.9, 9.9, 9.9)],
    )  # fmt: skip
    result = backtest(
        [entry(0), entry(2, direction="long"), entry(4, direction="long")], df, max_positions=1
    )
    metrics = result["performance_metrics"]
    assert [t["return"] for t in result["trades"]] == pytest.approx([0.2, -0.25, 0.1])
    assert metrics["avg_win"] == pytest.approx(0.15)
    assert metrics["avg_loss"] == pytest.approx(-0.25)
    assert metrics["payoff_ratio"] == pytest.approx(0.6)
    assert metrics["num_trades_long"] == 3 and metrics["num_trades_short"] == 0
    assert metrics["win_rate_long"] == pytest.approx(2 / 3) and metrics["win_rate_short"] is None
    curve = np.array([100_000.0, *result["equity_curve"]["values"]])
    daily = curve[1:] / curve[:-1] - 1
    assert metrics["volatility"] == pytest.approx(daily.std(ddof=1) * np.sqrt(252), rel=1e-12)
    # Peak 120k on 01-02, below it from 01-04 to the end (01-09): 4 sessions.
    assert metrics["max_drawdown_duration_sessions"] == 4
    assert metrics["calmar_ratio"] == pytest.approx(metrics["cagr"] / 0.25, rel=1e-12)
    assert metrics["trades_per_year"] == pytest.approx(3 / (8 / 365.25), rel=1e-12)


def test_a_stop_gapped_through_at_the_open_frees_its_slot_at_that_open() -> None:
    # A: flat at 100 except 2024-01-03 (O94 H95 L90 C92). A's trade enters at the open of
    # 01-02 (100) with its stop at 97; 01-03 opens at 94, through the stop, so it leaves at
    # that open and B, entering at the same open, takes the one slot.
    flat = [(100.0, 100.0, 100.0, 100.0)] * 6
    gapped = [*flat[:2], (94.0, 95.0, 90.0, 92.0), *flat[3:]]
    df = pd.concat([bars("A", gapped), bars("B", flat)], ignore_index=True)
    result = backtest(
        [entry(0, "A"), entry(1, "B")], df, stop_loss_pct=3.0, hold_days=3, max_positions=1
    )
    trades = {t["ticker"]: t for t in result["trades"]}
    assert (trades["A"]["exit_reason"], trades["A"]["exit_price"], trades["A"]["exit_date"]) == (
        "stop_loss",
        94.0,
        day(2),
    )
    assert (trades["B"]["entry_date"], trades["B"]["entry_price"]) == (day(2), 100.0)
    assert result["summary"]["signals_skipped_max_positions"] == 0


def test_a_stop_touched_during_the_session_holds_its_slot_to_the_close() -> None:
    # The same, but 01-03 opens at 100 and falls to 90 during the session: the stop fills
    # at 97 during the session, and the slot is held until that close, so B is skipped.
    flat = [(100.0, 100.0, 100.0, 100.0)] * 6
    touched = [*flat[:2], (100.0, 100.0, 90.0, 92.0), *flat[3:]]
    df = pd.concat([bars("A", touched), bars("B", flat)], ignore_index=True)
    result = backtest(
        [entry(0, "A"), entry(1, "B")], df, stop_loss_pct=3.0, hold_days=3, max_positions=1
    )
    (trade,) = result["trades"]
    assert (trade["ticker"], trade["exit_reason"], trade["exit_price"]) == ("A", "stop_loss", 97.0)
    assert result["summary"]["signals_skipped_max_positions"] == 1


def test_a_trailing_stop_gapped_through_frees_its_slot_at_the_open() -> None:
    flat = [(100.0, 100.0, 100.0, 100.0)] * 6
    gapped = [*flat[:2], (94.0, 95.0, 90.0, 92.0), *flat[3:]]
    df = pd.concat([bars("A", gapped), bars("B", flat)], ignore_index=True)
    result = backtest(
        [entry(0, "A"), entry(1, "B")], df, trailing_stop_pct=3.0, hold_days=3, max_positions=1
    )
    trades = {t["ticker"]: t for t in result["trades"]}
    assert (trades["A"]["exit_reason"], trades["A"]["exit_price"]) == ("trailing_stop", 94.0)
    assert trades["B"]["entry_date"] == day(2)


def _entry_exit_rows(rows: list[tuple[int, bool, bool]]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ticker": "AAA",
            "date": [DAYS[i] for i, _, _ in rows],
            "entry": [e for _, e, _ in rows],
            "exit": [x for _, _, x in rows],
        }
    )


@pytest.mark.parametrize("per_ticker", [1, 0, 2])
def test_a_row_with_entry_and_exit_under_close_entries_and_next_open_exits(
    per_ticker: int,
) -> None:
    """docs/engine.md: the row's exit fills at the next open, after the row's entry at the
    close, so it closes the position held before *and* the one its entry opened."""
    df = rising("AAA", 12)
    model: dict[str, Any] = {
        "entry": "close",
        "exit_on": "next_open",
        "max_entries_per_ticker": per_ticker,
    }
    held = backtest(_entry_exit_rows([(1, True, False), (4, True, True)]), df, **model)
    trades = [(t["signal_date"], t["exit_date"], t["exit_reason"]) for t in held["trades"]]
    closed_by_the_row = (day(5), "exit_signal")
    if per_ticker == 1:
        # The position held before is still open at the row's close: the entry is ignored.
        assert trades == [(day(1), *closed_by_the_row)]
        assert held["summary"]["entries_ignored_position_open"] == 1
    else:
        # Room for a second position: a one-night trade, closed by its own row's exit.
        assert trades == [(day(1), *closed_by_the_row), (day(4), *closed_by_the_row)]
        assert held["summary"]["entries_ignored_position_open"] == 0
    flat = backtest(_entry_exit_rows([(4, True, True)]), df, **model)
    ((signal, entered, left, reason),) = [
        (t["signal_date"], t["entry_date"], t["exit_date"], t["exit_reason"])
        for t in flat["trades"]
    ]
    assert (signal, entered, left, reason) == (day(4), day(4), *closed_by_the_row)
    assert flat["summary"]["exits_without_position"] == 0


def test_a_close_entry_is_first_marked_at_the_next_close() -> None:
    # Entry at the close of 01-02 (signal session), 50 bps a side: the curve still shows the
    # initial capital at that close; the entry's cost appears from the next close on.
    df = bars("AAA", [(100.0, 100.0, 100.0, 100.0)] * 6)
    result = backtest(
        [entry(1)], df, entry="close", hold_days=2, commission_bps=50.0, max_positions=1
    )
    values = result["equity_curve"]["values"]
    assert values[:2] == [100_000.0, 100_000.0]
    assert values[2] == pytest.approx(100_000.0 * (0.995 / 1.005))
