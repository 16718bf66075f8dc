"""The backtest's JSON report: summary, counts, trades, curves and warnings of one outcome."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from strategyq.engine.instances import InstanceFacts
from strategyq.engine.market import REQUIRED_COLUMNS, FloatArray, Market
from strategyq.engine.outcome import Outcome
from strategyq.engine.portfolio import Portfolio, Selection
from strategyq.engine.signals import SignalColumns
from strategyq.engine.simulate import EXIT_DATA_END, EXIT_REASONS, EXIT_SIGNAL, Candidates
from strategyq.trademodel import TradeModel


def data_shape(df: pd.DataFrame | Market, full: Market) -> list[int]:
    """The summary's ``data_shape``: the bars' rows and columns."""
    # A Market holds the six columns the engine reads.
    return (
        [int(df.shape[0]), int(df.shape[1])]
        if isinstance(df, pd.DataFrame)
        else [full.rows, len(REQUIRED_COLUMNS)]
    )


def benchmark_summary(bench: Market | None, name: str | None, market: Market) -> dict[str, Any]:
    """The summary's ``benchmark``: the ticker compared against, or the equal-weight default."""
    return (
        {"type": "ticker", "ticker": name}
        if bench is not None
        else {"type": "equal_weight_buy_and_hold", "symbols": len(market.symbols)}
    )


def backtest_result(
    instances: InstanceFacts,
    cols: SignalColumns,
    outcome: Outcome,
    model: TradeModel,
    market: Market,
    counts: dict[str, int],
    summary: dict[str, Any],
    max_instances: int,
    max_trades: int,
) -> dict[str, Any]:
    """The backtest result's lists and curves around its ``summary``."""
    portfolio = outcome.portfolio
    return {
        "instances": instances.head(max_instances),
        "summary": summary,
        "performance_metrics": outcome.metrics,
        "equity_curve": _curve(portfolio),
        "benchmark_curve": _benchmark_curve(portfolio, outcome.benchmark_closes, model),
        "trades": _trades(
            market,
            outcome.candidates,
            outcome.selection,
            portfolio,
            cols.index,
            cols.exit_index,
            instances,
            max_trades,
        ),
        "warnings": _warnings(counts, instances, market),
    }


def signal_counts(outcome: Outcome, cols: SignalColumns, unknown: int) -> dict[str, int]:
    """The summary's counts of signals that made no trade, or a different one."""
    cand, placement, chosen = outcome.candidates, outcome.placement, outcome.selection
    taken = chosen.taken
    data_end = int(np.count_nonzero(cand.reason[taken] == EXIT_DATA_END))
    used_exits = np.unique(cand.exit_source[taken][cand.reason[taken] == EXIT_SIGNAL])
    return {
        "signals_without_next_session": placement.no_next_session,
        "signals_outside_data": placement.outside_data,
        "signals_without_price": placement.no_price,
        "signals_without_date": cols.undated,
        "signals_before_start": cols.before_start,
        "signals_skipped_max_positions": chosen.skipped_slots,
        "entries_ignored_position_open": chosen.ignored_open,
        "entries_skipped_no_exposure": chosen.skipped_exposure,
        "entries_scaled_to_exposure": chosen.scaled_down,
        "weights_capped": int(np.count_nonzero(cols.weights[cand.source[taken]] > 1.0))
        if cols.weights is not None
        else 0,
        "exits_without_position": placement.exits_placed - len(used_exits),
        "exits_without_next_session": placement.exits_without_next_session,
        "unknown_ticker_instances": unknown,
        "trades_closed_at_data_end": data_end,
    }


def backtest_summary(
    instances: InstanceFacts,
    cols: SignalColumns,
    outcome: Outcome,
    model: TradeModel,
    counts: dict[str, int],
    *,
    date_range: list[str],
    symbols: int,
    shape: list[int],
    benchmark: dict[str, Any],
    max_instances: int,
    max_trades: int,
) -> dict[str, Any]:
    """The result's ``summary``: what went in, what came out, and ``counts``."""
    taken = outcome.taken
    equity = outcome.portfolio.equity
    return {
        "total_instances": instances.total,
        "positive_signals": instances.positive_signals,
        "entry_signals": len(cols.codes),
        "exit_signals": len(cols.exits),
        "date_range": date_range,
        "symbols_processed": symbols,
        "data_shape": shape,
        "instances_returned": min(instances.total, max_instances),
        "instances_truncated": instances.total > max_instances,
        "num_trades": len(taken),
        "trades_returned": min(len(taken), max_trades),
        "trades_truncated": len(taken) > max_trades,
        "initial_capital": float(model.initial_capital),
        "final_equity": float(equity[-1]) if len(equity) else None,
        "trade_model": model.to_json(),
        "sizing": "weight" if outcome.selection.fraction is not None else "slots",
        "benchmark": benchmark,
        **counts,
    }


def _benchmark_curve(
    portfolio: Portfolio, closes: FloatArray | None, model: TradeModel
) -> dict[str, list[Any]] | None:
    """The benchmark ticker bought with the initial capital at its first close on the curve."""
    if closes is None:
        return None
    known = np.flatnonzero(np.isfinite(closes))
    dates = portfolio.calendar.astype("datetime64[D]").astype(str).tolist()
    if len(known) == 0:
        return {"dates": dates, "values": [None] * len(dates)}
    scaled = closes / closes[known[0]] * float(model.initial_capital)
    values = [round(v, 6) if math.isfinite(v) else None for v in scaled.tolist()]
    return {"dates": dates, "values": values}


def _curve(portfolio: Portfolio) -> dict[str, list[Any]]:
    dates = portfolio.calendar.astype("datetime64[D]").astype(str).tolist()
    return {"dates": dates, "values": [round(v, 6) for v in portfolio.equity.tolist()]}


def _trades(
    market: Market,
    cand: Candidates,
    chosen: Selection,
    portfolio: Portfolio,
    signal_index: np.ndarray[Any, Any],
    exit_index: np.ndarray[Any, Any],
    instances: InstanceFacts,
    max_trades: int,
) -> list[dict[str, Any]]:
    taken = portfolio.taken[:max_trades]
    pnl = portfolio.pnl[:max_trades]
    instance = signal_index[cand.source[taken]]
    at = instance.tolist()
    columns: dict[str, list[Any]] = {
        "ticker": [market.symbols[c] for c in market.code[cand.sig_row[taken]].tolist()],
        "instance_index": at,
        "direction": ["short" if s else "long" for s in cand.short[taken].tolist()],
        "signal_date": instances.days_at(at),
        "entry_date": _days(market, cand.entry_row[taken]),
        "entry_price": cand.entry_price[taken].tolist(),
        "exit_date": _days(market, cand.exit_row[taken]),
        "exit_price": cand.exit_price[taken].tolist(),
        "exit_reason": [EXIT_REASONS[r] for r in cand.reason[taken].tolist()],
        "holding_sessions": (cand.exit_row - cand.sig_row)[taken].tolist(),
        "return": cand.ret[taken].tolist(),
        "pnl": pnl.tolist(),
        "score": instances.scores_at(at),
    }
    if chosen.fraction is not None:
        columns["weight"] = chosen.fraction[:max_trades].tolist()
    if len(taken) and bool(np.any(cand.exit_source[taken] >= 0)):
        columns["exit_instance_index"] = [
            None if e < 0 else int(exit_index[e]) for e in cand.exit_source[taken].tolist()
        ]
    keys = list(columns)
    return [dict(zip(keys, row, strict=True)) for row in zip(*columns.values(), strict=True)]


def _days(market: Market, rows: np.ndarray[Any, Any]) -> list[str]:
    days: list[str] = market.day[rows].astype("datetime64[D]").astype(str).tolist()
    return days


def _warnings(counts: dict[str, int], instances: InstanceFacts, market: Market) -> list[str]:
    notes: list[str] = []
    if counts["unknown_ticker_instances"]:
        examples = instances.unknown_examples(5)
        notes.append(
            f"{counts['unknown_ticker_instances']} instance(s) name tickers with no market data "
            f"in the range (e.g. {', '.join(examples)}); they made no trade"
        )
    messages = {
        "signals_outside_data": "signal(s) dated outside their ticker's data in the range; "
        "they made no trade",
        "signals_without_next_session": "signal(s) on a ticker's last session had no next "
        "session to enter at; they made no trade",
        "signals_without_price": "signal(s) met a missing or non-positive price; "
        "they made no trade",
        "signals_without_date": "signal(s) had no date; give each instance a 'date' to trade it",
        "signals_skipped_max_positions": "signal(s) found no free slot (max_positions); "
        "raise max_positions to take more",
        "trades_closed_at_data_end": "trade(s) were closed at the last close before their "
        "planned exit (the data ends)",
        "signals_before_start": "signal(s) dated before start_date (on warm-up rows) made no "
        "trade; such instances are left out of instances (summary.warmup_instances)",
        "entries_ignored_position_open": "entry signal(s) came while their ticker already held "
        "max_entries_per_ticker position(s); ignored",
        "entries_skipped_no_exposure": "weighted entry signal(s) found the total weight of open "
        "trades at 1; skipped",
        "entries_scaled_to_exposure": "weighted entry signal(s) were cut to the weight left "
        "under the exposure cap of 1",
        "weights_capped": "trade(s) had a weight above 1; sized at 1",
        "exits_without_position": "exit signal(s) found no open position to close",
        "exits_without_next_session": "exit signal(s) on a ticker's last session had no next "
        "open to fill at",
    }
    for key, text in messages.items():
        if counts[key]:
            notes.append(f"{counts[key]} {text}")
    return notes
