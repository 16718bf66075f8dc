"""Property tests: on random bars and random signals the books always balance."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from strategyq.engine import TradeModel, run_backtest


def random_frame(seed: int, tickers: int, sessions: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    days = pd.bdate_range("2023-01-02", periods=sessions)
    parts = []
    for t in range(tickers):
        # Each ticker keeps a random subset of sessions, so calendars differ between tickers.
        keep = np.sort(rng.choice(sessions, size=rng.integers(1, sessions + 1), replace=False))
        close = 50 * np.exp(np.cumsum(rng.normal(0, 0.03, len(keep))))
        open_ = close * np.exp(rng.normal(0, 0.02, len(keep)))
        high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.03, len(keep)))
        low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.03, len(keep)))
        parts.append(
            pd.DataFrame(
                {"ticker": f"T{t:02d}", "date": days[keep], "open": open_, "high": high,
                 "low": low, "close": close, "volume": 1.0}
            )
        )  # fmt: skip
    return pd.concat(parts, ignore_index=True)


models = st.builds(
    TradeModel,
    entry=st.sampled_from(["next_open", "close"]),
    hold_days=st.one_of(st.none(), st.just("auto"), st.integers(1, 6)),
    stop_loss_pct=st.one_of(st.none(), st.floats(0.5, 20)),
    take_profit_pct=st.one_of(st.none(), st.floats(0.5, 20)),
    commission_bps=st.floats(0, 50),
    slippage_bps=st.floats(0, 50),
    max_positions=st.integers(1, 6),
    exit_on=st.sampled_from(["next_open", "close"]),
    trailing_stop_pct=st.one_of(st.none(), st.floats(0.5, 20)),
    max_entries_per_ticker=st.integers(0, 2),
)


def finite_or_null(value: Any) -> bool:
    return value is None or (isinstance(value, (int, float)) and math.isfinite(value))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    tickers=st.integers(1, 4),
    sessions=st.integers(1, 30),
    signals=st.integers(0, 40),
    exit_share=st.sampled_from([0.0, 0.3, 0.6]),
    weighted=st.booleans(),
    model=models,
)
def test_books_balance_and_nothing_looks_ahead(
    seed: int,
    tickers: int,
    sessions: int,
    signals: int,
    exit_share: float,
    weighted: bool,
    model: TradeModel,
) -> None:
    df = random_frame(seed, tickers, sessions)
    rng = np.random.default_rng(seed + 1)
    calendar = pd.bdate_range("2022-12-28", periods=sessions + 8)
    instances: list[dict[str, Any]] = []
    for _ in range(signals):
        instance: dict[str, Any] = {
            "ticker": f"T{rng.integers(0, tickers + 1):02d}",
            "date": str(calendar[rng.integers(0, len(calendar))]),
            "direction": "short" if rng.random() < 0.3 else "long",
            "score": float(rng.integers(0, 3)) if rng.random() < 0.7 else None,
            "signal": bool(rng.random() < 0.9),
        }
        if rng.random() < exit_share:
            instance["action"] = "exit"
        elif weighted and rng.random() < 0.8:
            instance["weight"] = float(rng.choice([0.1, 0.3, 0.5, 0.9, 1.5]))
        instances.append(instance)
    result = run_backtest(instances, df, model, start=None, end=None)
    used = TradeModel(**result["summary"]["trade_model"])

    final = result["equity_curve"]["values"][-1] if result["equity_curve"]["values"] else 1e5
    pnl = sum(t["pnl"] for t in result["trades"])
    assert math.isclose(pnl, final - model.initial_capital, rel_tol=1e-9, abs_tol=1e-3)
    assert math.isclose(pnl, result["summary"]["final_equity"] - 1e5, rel_tol=1e-9, abs_tol=1e-6)

    def bar(ticker: str, day: pd.Timestamp, column: str) -> float:
        return float(df.loc[(df.ticker == ticker) & (df.date == day), column].item())

    for trade in result["trades"]:
        signal_day = pd.Timestamp(trade["signal_date"])
        entry_day = pd.Timestamp(trade["entry_date"])
        exit_day = pd.Timestamp(trade["exit_date"])
        if model.entry == "next_open":
            assert entry_day > signal_day  # the signal's session has ended before the open
        else:
            assert entry_day <= signal_day  # the close of the signal's own session
            assert trade["entry_price"] == bar(trade["ticker"], entry_day, "close")
        assert exit_day >= entry_day
        if used.hold_days is not None:
            assert 0 <= trade["holding_sessions"] <= used.hold_days
        if trade["exit_reason"] == "exit_signal":
            exit_instance = instances[trade["exit_instance_index"]]
            assert exit_instance["ticker"] == trade["ticker"]
            assert exit_instance.get("direction", "long") == trade["direction"]
            exit_signal_day = pd.Timestamp(exit_instance["date"])
            if model.exit_on == "next_open":
                assert exit_day > exit_signal_day
                assert trade["exit_price"] == bar(trade["ticker"], exit_day, "open")
                assert exit_day > entry_day or model.entry == "close"
            else:
                assert exit_day <= exit_signal_day
                assert trade["exit_price"] == bar(trade["ticker"], exit_day, "close")
                assert exit_day > entry_day or model.entry == "next_open"
        stops = (model.stop_loss_pct, model.trailing_stop_pct)
        if model.stop_loss_pct is not None and trade["exit_reason"] not in (
            "stop_loss", "trailing_stop"
        ):  # fmt: skip
            worst = -model.stop_loss_pct / 100
            gross = trade["exit_price"] / trade["entry_price"] - 1
            gross = -gross if trade["direction"] == "short" else gross
            # An exit signal filled at an open that gapped through the stop gets the price
            # the stop would have got (that open): the loss bound holds only above the open.
            at_open = trade["exit_reason"] == "exit_signal" and model.exit_on == "next_open"
            gapped = at_open and trade["exit_price"] == bar(trade["ticker"], exit_day, "open")
            assert gross > worst - 1e-12 or stops[1] is not None or gapped

    offset = 1 if model.entry == "close" else 0

    def leaves(t: dict[str, Any]) -> int:
        # A trade leaves at an open when an exit signal fills there, or when the open
        # gapped through its stop or target (it fills at that open): its slot is free then.
        exit_day = pd.Timestamp(t["exit_date"])
        at_open = (t["exit_reason"] == "exit_signal" and model.exit_on == "next_open") or (
            t["exit_reason"] in ("stop_loss", "take_profit", "trailing_stop")
            and t["exit_price"] == bar(t["ticker"], exit_day, "open")
        )
        return int(exit_day.value * 2 + (0 if at_open else 1))

    spans = [
        (pd.Timestamp(t["entry_date"]).value * 2 + offset, leaves(t), t) for t in result["trades"]
    ]
    for start, _, trade in spans:
        open_now = [t for s, e, t in spans if s <= start < e]
        assert len(open_now) <= model.max_positions
        if model.max_entries_per_ticker:
            same = [t for t in open_now if t["ticker"] == trade["ticker"]]
            assert len(same) <= model.max_entries_per_ticker
        if "weight" in trade:
            assert sum(t["weight"] for t in open_now) <= 1 + 1e-9
            assert 0 < trade["weight"] <= 1

    assert all(finite_or_null(v) for v in result["performance_metrics"].values())
    assert all(finite_or_null(v) for v in result["equity_curve"]["values"])
