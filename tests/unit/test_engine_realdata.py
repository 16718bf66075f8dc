"""The seed's gap-up strategy on real Quandl WIKI bars (bokeh_sampledata), checked by hand.

The frame is built straight from the sample package and the trades are
recomputed here in plain Python from the raw bars, independently of the engine.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import pytest
from bokeh_sampledata import stocks

from strategyq.engine import TradeModel, run_backtest

TICKERS = ("AAPL", "FB", "GOOG", "IBM", "MSFT")


def raw_bars() -> dict[str, dict[str, list[Any]]]:
    return {t: getattr(stocks, t) for t in TICKERS}


def frame(raw: dict[str, dict[str, list[Any]]]) -> pd.DataFrame:
    parts = []
    for ticker, series in raw.items():
        part = pd.DataFrame(
            {k: series[k] for k in ("date", "open", "high", "low", "close", "volume")}
        )
        part.insert(0, "ticker", ticker)
        part["date"] = pd.to_datetime(part["date"])
        part = part.sort_values("date", ignore_index=True)
        part["gap_pct"] = (part["open"] / part["close"].shift(1) - 1.0) * 100.0
        part["volume_ratio"] = part["volume"] / part["volume"].rolling(20).mean()
        parts.append(part)
    return pd.concat(parts, ignore_index=True).sort_values(["ticker", "date"], ignore_index=True)


def gap_up_strategy(df: pd.DataFrame) -> list[dict[str, Any]]:
    """The seed's example strategy, verbatim in spirit."""
    hits = df[(df["gap_pct"] > 3.0) & (df["volume_ratio"] > 1.5)]
    return [
        {"ticker": r.ticker, "date": str(r.date), "signal": True, "gap_percent": r.gap_pct,
         "message": f"{r.ticker} gapped up {r.gap_pct:.1f}%"}
        for r in hits.itertuples()
    ]  # fmt: skip


def expected_trades(
    raw: dict[str, dict[str, list[Any]]], hold_days: int, cost: float, one_at_a_time: bool
) -> dict[tuple[str, str], float]:
    """(ticker, signal date) → net return, from the raw lists with plain loops.

    With ``one_at_a_time`` a signal while the ticker's last trade is still open is skipped.
    """
    out: dict[tuple[str, str], float] = {}
    for ticker, s in raw.items():
        rows = sorted(zip(s["date"], s["open"], s["close"], s["volume"], strict=True))
        open_until = -1
        for i in range(20, len(rows)):
            date, open_, _, volume = rows[i]
            prev_close = rows[i - 1][2]
            window = [r[3] for r in rows[i - 19 : i + 1]]
            gap = (open_ / prev_close - 1) * 100
            if not (gap > 3.0 and volume / (sum(window) / 20) > 1.5):
                continue
            if i + 1 >= len(rows):
                continue  # no next session to enter at
            if one_at_a_time and i + 1 <= open_until:
                continue  # enters at an open while the last trade exits at a later close
            open_until = min(i + hold_days, len(rows) - 1)
            entry = rows[i + 1][1]
            exit_ = rows[min(i + hold_days, len(rows) - 1)][2]
            out[(ticker, date)] = exit_ * (1 - cost) / (entry * (1 + cost)) - 1
    return out


@pytest.mark.parametrize(
    ("hold_days", "commission_bps", "per_ticker"), [(1, 0.0, 1), (3, 7.5, 1), (3, 7.5, 0)]
)
def test_gap_up_returns_match_an_independent_computation(
    hold_days: int, commission_bps: float, per_ticker: int
) -> None:
    raw = raw_bars()
    df = frame(raw)
    instances = gap_up_strategy(df)
    model = TradeModel(
        hold_days=hold_days, commission_bps=commission_bps, max_positions=50,
        max_entries_per_ticker=per_ticker,
    )  # fmt: skip
    result = run_backtest(instances, df, model, start=None, end=None)

    expected = expected_trades(raw, hold_days, commission_bps / 10_000, per_ticker == 1)
    got = {(t["ticker"], t["signal_date"]): t["return"] for t in result["trades"]}
    assert len(expected) > 20  # the sample really has gap-ups to test on
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key

    summary = result["summary"]
    assert summary["total_instances"] == len(instances) == summary["positive_signals"]
    assert summary["symbols_processed"] == 5
    assert summary["data_shape"] == [len(df), len(df.columns)]
    assert summary["signals_skipped_max_positions"] == 0
    metrics = result["performance_metrics"]
    assert metrics["num_trades"] == len(expected)
    assert metrics["avg_return"] == pytest.approx(sum(expected.values()) / len(expected))
    assert metrics["win_rate"] == pytest.approx(
        sum(v > 0 for v in expected.values()) / len(expected)
    )
    assert math.isclose(
        sum(t["pnl"] for t in result["trades"]),
        summary["final_equity"] - model.initial_capital,
        rel_tol=1e-9,
    )
    assert result["instances"][0]["date"] == instances[0]["date"][:10]


def sma_cross_strategy(df: pd.DataFrame) -> pd.DataFrame:
    """A newcomer's SMA 20/50 crossover in vectorbt's idiom: boolean entry/exit columns."""
    close = df.groupby("ticker")["close"]
    fast = close.transform(lambda s: s.rolling(20).mean())
    slow = close.transform(lambda s: s.rolling(50).mean())
    above = fast > slow
    before = above.groupby(df["ticker"]).shift(1, fill_value=False)
    ready = slow.notna() & slow.groupby(df["ticker"]).shift(1).notna()
    out = df[["ticker", "date"]].copy()
    out["entry"] = ready & above & ~before
    out["exit"] = ready & ~above & before
    return out


def crossover_trades(
    raw: dict[str, dict[str, list[Any]]], exit_on: str, cost: float
) -> list[tuple[str, str, str, str, float, str]]:
    """(ticker, signal, entry, exit dates, net return, reason), walking each ticker's bars."""
    out: list[tuple[str, str, str, str, float, str]] = []
    for ticker, s in raw.items():
        bars = pd.DataFrame({k: s[k] for k in ("date", "open", "close")})
        bars["date"] = pd.to_datetime(bars["date"]).dt.strftime("%Y-%m-%d")
        bars = bars.sort_values("date", ignore_index=True)
        fast = bars["close"].rolling(20).mean()
        slow = bars["close"].rolling(50).mean()
        held: tuple[str, str, float] | None = None  # (signal date, entry date, entry price)
        want_in = want_out = False
        signal_date = ""
        for i in range(len(bars)):
            date, open_, close = bars.at[i, "date"], bars.at[i, "open"], bars.at[i, "close"]
            if want_out and held is not None:  # exit at this open
                out.append((ticker, held[0], held[1], date, _net(held[2], open_, cost), "exit"))
                held = None
            if want_in and held is None:  # enter at this open
                held = (signal_date, date, open_)
            want_in = want_out = False
            if i >= 50:
                cross_up = fast[i] > slow[i] and not fast[i - 1] > slow[i - 1]
                cross_down = not fast[i] > slow[i] and fast[i - 1] > slow[i - 1]
                if cross_up and i + 1 < len(bars):
                    want_in, signal_date = True, date
                if cross_down and held is not None and held[1] <= date:
                    if exit_on == "close":
                        out.append(
                            (ticker, held[0], held[1], date, _net(held[2], close, cost), "exit")
                        )
                        held = None
                    elif i + 1 < len(bars):
                        want_out = True
        if held is not None:
            last = bars.iloc[-1]
            out.append((ticker, held[0], held[1], last["date"], _net(held[2], last["close"], cost),
                        "data_end"))  # fmt: skip
    return sorted(out)


def _net(entry: float, exit_: float, cost: float) -> float:
    return exit_ * (1 - cost) / (entry * (1 + cost)) - 1


@pytest.mark.parametrize(
    ("exit_on", "commission_bps", "slippage_bps"),
    [("next_open", 0.0, 0.0), ("next_open", 10.0, 5.0), ("close", 0.0, 0.0), ("close", 10.0, 5.0)],
)
def test_crossover_with_exits_matches_an_independent_walk(
    exit_on: str, commission_bps: float, slippage_bps: float
) -> None:
    raw = raw_bars()
    df = frame(raw)
    model = TradeModel(
        exit_on=exit_on, commission_bps=commission_bps, slippage_bps=slippage_bps,  # type: ignore[arg-type]
        max_positions=len(TICKERS),
    )  # fmt: skip
    result = run_backtest(sma_cross_strategy(df), df, model, start=None, end=None)
    cost = (commission_bps + slippage_bps) / 10_000
    expected = crossover_trades(raw, exit_on, cost)
    reasons = {"exit_signal": "exit", "data_end": "data_end"}
    got = sorted(
        (t["ticker"], t["signal_date"], t["entry_date"], t["exit_date"], t["return"],
         reasons[t["exit_reason"]])
        for t in result["trades"]
    )  # fmt: skip
    assert len(expected) > 100  # the sample really crosses
    assert [g[:4] + g[5:] for g in got] == [e[:4] + e[5:] for e in expected]
    for mine, theirs in zip(got, expected, strict=True):
        assert mine[4] == pytest.approx(theirs[4], rel=1e-12, abs=1e-12), mine
    summary = result["summary"]
    assert summary["trade_model"]["hold_days"] is None
    assert summary["signals_skipped_max_positions"] == 0
    assert result["performance_metrics"]["avg_holding_sessions"] > 10
    assert math.isclose(
        sum(t["pnl"] for t in result["trades"]),
        summary["final_equity"] - model.initial_capital,
        rel_tol=1e-9,
    )
