"""``run_backtest``: instances + bars + trade model → the backtest result (plain JSON)."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import numpy as np
import pandas as pd

from strategyq.engine.instances import NormalizedInstances, normalize_instances
from strategyq.engine.jsonvalues import date_to_day, day_to_iso, iso_seconds, parse_timestamp
from strategyq.engine.market import REQUIRED_COLUMNS, FloatArray, IntArray, Market, as_market
from strategyq.engine.metrics import benchmark_return, performance_metrics
from strategyq.engine.model import TradeModel
from strategyq.engine.portfolio import Portfolio, build, select
from strategyq.engine.simulate import (
    EXIT_DATA_END,
    EXIT_REASONS,
    BoolArray,
    Candidates,
    Placement,
    simulate,
)
from strategyq.errors import EngineError

logger = logging.getLogger(__name__)


def simulate_and_measure(
    market: Market,
    codes: IntArray,
    days: IntArray,
    short: BoolArray,
    scores: FloatArray,
    model: TradeModel,
) -> tuple[Candidates, Placement, IntArray, Portfolio, dict[str, Any]]:
    """The backtest's core: trades, slot selection, portfolio and metrics.

    Returns:
        (candidates, placement, taken, portfolio, performance metrics)
    """
    cand, placement = simulate(market, codes, days, short, model)
    taken, _ = select(market, cand, scores[cand.source], model)
    portfolio = build(market, cand, taken, model)
    metrics = performance_metrics(
        returns=cand.ret[taken],
        pnl=portfolio.pnl,
        holding=(cand.exit_row - cand.sig_row)[taken],
        calendar=portfolio.calendar,
        equity=portfolio.equity,
        exposed=portfolio.exposed,
        initial_capital=float(model.initial_capital),
        benchmark=benchmark_return(market),
    )
    return cand, placement, taken, portfolio, metrics


def run_backtest(
    instances: Any,
    df: pd.DataFrame | Market,
    model: TradeModel,
    *,
    start: dt.datetime | None,
    end: dt.datetime | None,
    max_instances: int = 10_000,
    max_trades: int = 10_000,
) -> dict[str, Any]:
    """Turn a strategy's instances into trades, an equity curve and metrics.

    Args:
        instances: the strategy's output (list of dicts or a DataFrame), or
            :class:`NormalizedInstances` already built.
        df: bars sorted by (ticker, date); may include warm-up rows before ``start``.
            Or the :class:`Market` that ``market_from_frame`` built from them.
        model: the trade model.
        start, end: the backtest's range (inclusive, by date); ``None`` means
            the first/last date in ``df``. Signals outside it make no trade.
        max_instances, max_trades: caps on the lists returned (the summary
            counts everything).

    Returns:
        A plain-JSON dict with ``instances``, ``summary``,
        ``performance_metrics``, ``equity_curve``, ``trades`` and ``warnings``.

    Raises:
        EngineError: an instance is malformed (the message names it).
        DataError: the bars are malformed.
    """
    full = as_market(df)
    first, last = _range(full, start, end)
    market = full.window(first.date() if start else None, last.date() if end else None)
    normalized = (
        instances
        if isinstance(instances, NormalizedInstances)
        else normalize_instances(instances, known_tickers=market.symbols)
    )
    codes, days, short, scores, signal_index, undated = _signal_columns(normalized, market)
    unknown = len(normalized.unknown_tickers)
    cand, placement, taken, portfolio, metrics = simulate_and_measure(
        market, codes, days, short, scores, model
    )
    data_end = int(np.count_nonzero(cand.reason[taken] == EXIT_DATA_END))
    counts: dict[str, int] = {
        "signals_without_next_session": placement.no_next_session,
        "signals_outside_data": placement.outside_data,
        "signals_without_price": placement.no_price,
        "signals_without_date": undated,
        "signals_skipped_max_positions": len(cand) - len(taken),
        "unknown_ticker_instances": unknown,
        "trades_closed_at_data_end": data_end,
    }
    summary: dict[str, Any] = {
        "total_instances": normalized.total,
        "positive_signals": normalized.positive_signals,
        "date_range": [iso_seconds(first), iso_seconds(last)],
        "symbols_processed": len(full.symbols),
        # A Market holds the six columns the engine reads.
        "data_shape": [int(df.shape[0]), int(df.shape[1])]
        if isinstance(df, pd.DataFrame)
        else [full.rows, len(REQUIRED_COLUMNS)],
        "instances_returned": min(normalized.total, max_instances),
        "instances_truncated": normalized.total > max_instances,
        "num_trades": len(taken),
        "trades_returned": min(len(taken), max_trades),
        "trades_truncated": len(taken) > max_trades,
        "initial_capital": float(model.initial_capital),
        "final_equity": float(portfolio.equity[-1]) if len(portfolio.equity) else None,
        "trade_model": model.to_json(),
        **counts,
    }
    logger.debug("backtest: %s signals, %s trades", len(codes), len(taken))
    return {
        "instances": normalized.records[:max_instances],
        "summary": summary,
        "performance_metrics": metrics,
        "equity_curve": _curve(portfolio),
        "trades": _trades(market, cand, portfolio, signal_index, normalized, max_trades),
        "warnings": _warnings(counts, normalized, market),
    }


def _range(
    market: Market, start: dt.datetime | None, end: dt.datetime | None
) -> tuple[dt.datetime, dt.datetime]:
    try:
        first = parse_timestamp(start, "start") if start is not None else None
        last = parse_timestamp(end, "end") if end is not None else None
    except ValueError as exc:
        raise EngineError(str(exc)) from None
    days = market.day
    if first is None:
        first = _day_start(int(days.min())) if len(days) else dt.datetime(1970, 1, 1)
    if last is None:
        last = _day_start(int(days.max())) if len(days) else first
    if last < first:
        raise EngineError(
            f"the backtest range ends ({iso_seconds(last)}) before it starts "
            f"({iso_seconds(first)}); swap start_date and end_date"
        )
    return first, last


def _day_start(day: int) -> dt.datetime:
    return dt.datetime.fromisoformat(day_to_iso(day))


def _signal_columns(
    normalized: NormalizedInstances, market: Market
) -> tuple[IntArray, IntArray, BoolArray, FloatArray, IntArray, int]:
    """Per-signal arrays (code, day, short, score, instance index) of the tradable signals."""
    code_of = market.code_of()
    index: list[int] = []
    codes: list[int] = []
    days: list[int] = []
    undated = 0
    for i, (ticker, day, on) in enumerate(
        zip(normalized.tickers, normalized.days, normalized.active, strict=True)
    ):
        if not on:
            continue
        code = code_of.get(ticker)
        if code is None:
            continue
        if day is None:
            undated += 1
            continue
        index.append(i)
        codes.append(code)
        days.append(date_to_day(day))
    idx = np.asarray(index, dtype=np.int64)
    short = np.asarray(normalized.short, dtype=bool)[idx] if len(idx) else np.zeros(0, bool)
    scores: FloatArray = np.asarray(
        [np.nan if s is None else s for s in normalized.scores], dtype=np.float64
    )
    return (
        np.asarray(codes, dtype=np.int64),
        np.asarray(days, dtype=np.int64),
        short,
        scores[idx] if len(idx) else np.zeros(0),
        idx,
        undated,
    )


def _curve(portfolio: Portfolio) -> dict[str, list[Any]]:
    dates = portfolio.calendar.astype("datetime64[D]").astype(str).tolist()
    return {"dates": dates, "values": [round(v, 6) for v in portfolio.equity.tolist()]}


def _trades(
    market: Market,
    cand: Candidates,
    portfolio: Portfolio,
    signal_index: np.ndarray[Any, Any],
    normalized: NormalizedInstances,
    max_trades: int,
) -> list[dict[str, Any]]:
    taken = portfolio.taken[:max_trades]
    pnl = portfolio.pnl[:max_trades]
    instance = signal_index[cand.source[taken]]
    columns: dict[str, list[Any]] = {
        "ticker": [market.symbols[c] for c in market.code[cand.sig_row[taken]].tolist()],
        "instance_index": instance.tolist(),
        "direction": ["short" if s else "long" for s in cand.short[taken].tolist()],
        "signal_date": _iso_days(normalized, instance),
        "entry_date": _days(market, cand.entry_row[taken]),
        "entry_price": cand.entry_price[taken].tolist(),
        "exit_date": _days(market, cand.exit_row[taken]),
        "exit_price": cand.exit_price[taken].tolist(),
        "exit_reason": [EXIT_REASONS[r] for r in cand.reason[taken].tolist()],
        "holding_sessions": (cand.exit_row - cand.sig_row)[taken].tolist(),
        "return": cand.ret[taken].tolist(),
        "pnl": pnl.tolist(),
        "score": [normalized.scores[i] for i in instance.tolist()],
    }
    keys = list(columns)
    return [dict(zip(keys, row, strict=True)) for row in zip(*columns.values(), strict=True)]


def _days(market: Market, rows: np.ndarray[Any, Any]) -> list[str]:
    days: list[str] = market.day[rows].astype("datetime64[D]").astype(str).tolist()
    return days


def _iso_days(normalized: NormalizedInstances, instance: np.ndarray[Any, Any]) -> list[str]:
    out: list[str] = []
    for i in instance.tolist():
        day = normalized.days[i]
        out.append(day.isoformat() if day is not None else "")
    return out


def _warnings(counts: dict[str, int], normalized: NormalizedInstances, market: Market) -> list[str]:
    notes: list[str] = []
    if counts["unknown_ticker_instances"]:
        examples = sorted({normalized.tickers[i] for i in normalized.unknown_tickers})[:5]
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
    }
    for key, text in messages.items():
        if counts[key]:
            notes.append(f"{counts[key]} {text}")
    return notes
