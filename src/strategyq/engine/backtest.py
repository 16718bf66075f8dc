"""``run_backtest``: instances + bars + trade model → the backtest result (plain JSON)."""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from strategyq.engine.columnar import ColumnSignals, column_signals
from strategyq.engine.instances import NormalizedInstances, normalize_instances
from strategyq.engine.jsonvalues import date_to_day, day_to_iso, iso_seconds, parse_timestamp
from strategyq.engine.market import (
    REQUIRED_COLUMNS,
    FloatArray,
    IntArray,
    Market,
    as_market,
    market_from_frame,
)
from strategyq.engine.metrics import benchmark_closes, benchmark_return, performance_metrics
from strategyq.engine.portfolio import Portfolio, Selection, build, select
from strategyq.engine.simulate import (
    EXIT_DATA_END,
    EXIT_REASONS,
    EXIT_SIGNAL,
    NO_EXITS,
    BoolArray,
    Candidates,
    ExitSignals,
    Placement,
    simulate,
)
from strategyq.errors import DataError, EngineError
from strategyq.trademodel import TradeModel

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    """Everything one simulation produced (see :func:`simulate_and_measure`)."""

    candidates: Candidates
    placement: Placement
    selection: Selection
    portfolio: Portfolio
    metrics: dict[str, Any]
    benchmark_closes: FloatArray | None

    @property
    def taken(self) -> IntArray:
        """Candidate indices of the trades made."""
        return self.selection.taken


def simulate_and_measure(
    market: Market,
    codes: IntArray,
    days: IntArray,
    short: BoolArray,
    scores: FloatArray,
    model: TradeModel,
    *,
    exits: ExitSignals = NO_EXITS,
    weights: FloatArray | None = None,
    benchmark: Market | None = None,
) -> Outcome:
    """The backtest's core: trades, selection, portfolio and metrics.

    ``codes``/``days``/``short``/``scores``/``weights`` describe the entry
    signals (``weights`` NaN where an entry has none); ``exits`` the active
    exits; ``benchmark`` a one-ticker market to compare against (default: the
    equal-weight buy-and-hold of ``market``). ``model.hold_days`` must not be
    ``"auto"`` (see :meth:`TradeModel.resolved`).
    """
    cand, placement = simulate(market, codes, days, short, model, exits)
    chosen = select(
        market, cand, scores[cand.source], model, None if weights is None else weights[cand.source]
    )
    taken = chosen.taken
    portfolio = build(market, cand, taken, model, chosen.fraction)
    closes = benchmark_closes(benchmark, portfolio.calendar) if benchmark is not None else None
    metrics = performance_metrics(
        returns=cand.ret[taken],
        pnl=portfolio.pnl,
        holding=(cand.exit_row - cand.sig_row)[taken],
        calendar=portfolio.calendar,
        equity=portfolio.equity,
        exposed=portfolio.exposed,
        initial_capital=float(model.initial_capital),
        benchmark=None if benchmark is not None else benchmark_return(market),
        short=cand.short[taken],
        benchmark_closes=closes,
    )
    return Outcome(cand, placement, chosen, portfolio, metrics, closes)


def run_backtest(
    instances: Any,
    df: pd.DataFrame | Market,
    model: TradeModel,
    *,
    start: dt.datetime | None,
    end: dt.datetime | None,
    max_instances: int = 10_000,
    max_trades: int = 10_000,
    benchmark: pd.DataFrame | Market | None = None,
    benchmark_symbol: str | None = None,
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
        benchmark: bars of one ticker to compare against (``benchmark_symbol``
            names it; default: its only ticker); without it, the equal-weight
            buy-and-hold of the backtest's own symbols.

    Returns:
        A plain-JSON dict with ``instances``, ``summary``,
        ``performance_metrics``, ``equity_curve``, ``benchmark_curve``,
        ``trades`` and ``warnings``.

    Raises:
        EngineError: an instance is malformed (the message names it).
        DataError: the bars are malformed.
    """
    full = as_market(df)
    first, last = _range(full, start, end)
    market = full.window(first.date() if start else None, last.date() if end else None)
    normalized = _normalized(instances, market)
    model = model.resolved(normalized.has_exits)
    cols = _signal_columns(normalized, market, date_to_day(first.date()) if start else None)
    bench, bench_name = _benchmark(benchmark, benchmark_symbol, first, last)
    outcome = simulate_and_measure(
        market, cols.codes, cols.days, cols.short, cols.scores, model,
        exits=cols.exits, weights=cols.weights, benchmark=bench,
    )  # fmt: skip
    counts = _counts(outcome, cols, len(normalized.unknown_tickers))
    summary = _summary(
        normalized, cols, outcome, model, counts,
        date_range=[iso_seconds(first), iso_seconds(last)], symbols=len(full.symbols),
        shape=_data_shape(df, full), benchmark=_benchmark_summary(bench, bench_name, market),
        max_instances=max_instances, max_trades=max_trades,
    )  # fmt: skip
    logger.debug("backtest: %s signals, %s trades", len(cols.codes), len(outcome.taken))
    return _result(
        normalized, cols, outcome, model, market, counts, summary, max_instances, max_trades
    )


def _data_shape(df: pd.DataFrame | Market, full: Market) -> list[int]:
    """The summary's ``data_shape``: the bars' rows and columns."""
    # A Market holds the six columns the engine reads.
    return (
        [int(df.shape[0]), int(df.shape[1])]
        if isinstance(df, pd.DataFrame)
        else [full.rows, len(REQUIRED_COLUMNS)]
    )


def _benchmark_summary(bench: Market | None, name: str | None, market: Market) -> dict[str, Any]:
    """The summary's ``benchmark``: the ticker compared against, or the equal-weight default."""
    return (
        {"type": "ticker", "ticker": name}
        if bench is not None
        else {"type": "equal_weight_buy_and_hold", "symbols": len(market.symbols)}
    )


def _result(
    normalized: NormalizedInstances,
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
        "instances": normalized.records[:max_instances],
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
            normalized,
            max_trades,
        ),
        "warnings": _warnings(counts, normalized, market),
    }


def _normalized(instances: Any, market: Market) -> NormalizedInstances:
    """``instances`` as :class:`NormalizedInstances` (as they are when already built)."""
    if isinstance(instances, NormalizedInstances):
        return instances
    return normalize_instances(instances, known_tickers=market.symbols)


def _counts(outcome: Outcome, cols: SignalColumns, unknown: int) -> dict[str, int]:
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


def _summary(
    normalized: NormalizedInstances,
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
        "total_instances": normalized.total,
        "positive_signals": normalized.positive_signals,
        "entry_signals": len(cols.codes),
        "exit_signals": len(cols.exits),
        "date_range": date_range,
        "symbols_processed": symbols,
        "data_shape": shape,
        "instances_returned": min(normalized.total, max_instances),
        "instances_truncated": normalized.total > max_instances,
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


def backtest_metrics(
    instances: Any,
    df: pd.DataFrame | Market,
    model: TradeModel,
    *,
    start: dt.datetime | None,
    end: dt.datetime | None,
    benchmark: pd.DataFrame | Market | None = None,
    benchmark_symbol: str | None = None,
) -> dict[str, Any]:
    """The ``performance_metrics`` that :func:`run_backtest` reports for the same arguments.

    Only the metrics: no instance records, trades or curves are built, which
    is most of a small backtest's cost (a sweep keeps only the metrics of all
    but its best combination). ``instances`` may also be a mapping of
    equal-length columns (``{"ticker": [...], "date": [...], "entry": [...]}``),
    read column-wise when their shape allows it (see
    :mod:`strategyq.engine.columnar`) and as the rows they make otherwise.

    Raises:
        EngineError: an instance is malformed (the message names it).
        DataError: the bars are malformed.
    """
    full = as_market(df)
    first, last = _range(full, start, end)
    market = full.window(first.date() if start else None, last.date() if end else None)
    first_day = date_to_day(first.date()) if start else None
    cols: SignalColumns | None = None
    if isinstance(instances, Mapping):
        fast = column_signals(instances, market, first_day)
        if fast is None:
            names = list(instances)
            instances = [
                dict(zip(names, row, strict=True)) for row in zip(*instances.values(), strict=True)
            ]
        else:
            model = model.resolved(fast.has_exits)
            cols = _columns_from(fast)
    if cols is None:
        normalized = _normalized(instances, market)
        model = model.resolved(normalized.has_exits)
        cols = _signal_columns(normalized, market, first_day)
    bench, _ = _benchmark(benchmark, benchmark_symbol, first, last)
    outcome = simulate_and_measure(
        market, cols.codes, cols.days, cols.short, cols.scores, model,
        exits=cols.exits, weights=cols.weights, benchmark=bench,
    )  # fmt: skip
    return outcome.metrics


def _columns_from(fast: ColumnSignals) -> SignalColumns:
    """The signal arrays of :func:`_signal_columns` from column-wise signals (no weights,
    scores or shorts: those fields take the row path)."""
    entries = len(fast.entry_codes)
    return SignalColumns(
        codes=fast.entry_codes,
        days=fast.entry_days,
        short=np.zeros(entries, dtype=bool),
        scores=np.full(entries, np.nan),
        weights=None,
        index=fast.entry_index,
        exits=ExitSignals(
            codes=fast.exit_codes,
            days=fast.exit_days,
            short=np.zeros(len(fast.exit_codes), dtype=bool),
        ),
        exit_index=np.zeros(0, dtype=np.int64),
        undated=0,
        before_start=0,
    )


def _benchmark(
    bars: pd.DataFrame | Market | None,
    symbol: str | None,
    first: dt.datetime,
    last: dt.datetime,
) -> tuple[Market | None, str | None]:
    """The benchmark's one-ticker market within the range, and its name."""
    if bars is None:
        return None, None
    market = as_market(bars).window(first.date(), last.date())
    names = market.symbols
    name = symbol if symbol is not None else (names[0] if names else None)
    if name is None or name not in names:
        raise DataError(
            f"the benchmark {name or symbol!r} has no bars from {first.date()} to {last.date()}; "
            "import its data or pick another benchmark ticker"
        )
    if len(names) > 1:
        code = names.index(name)
        keep = np.zeros(market.rows, dtype=bool)
        keep[market.starts[code] : market.ends[code]] = True
        market = market_from_frame(
            pd.DataFrame(
                {
                    "ticker": name,
                    "date": market.day[keep].astype("datetime64[D]"),
                    "open": market.open[keep],
                    "high": market.high[keep],
                    "low": market.low[keep],
                    "close": market.close[keep],
                }
            )
        )
    return market, name


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


@dataclass(frozen=True)
class SignalColumns:
    """The tradable entries as arrays (``index``: each one's instance), and the exits."""

    codes: IntArray
    days: IntArray
    short: BoolArray
    scores: FloatArray
    weights: FloatArray | None
    index: IntArray
    exits: ExitSignals
    exit_index: IntArray
    undated: int
    before_start: int


@dataclass
class _PickedSignals:
    """The instance index, ticker code and day of each kept entry and exit, and the counts."""

    index: list[int] = field(default_factory=list)
    codes: list[int] = field(default_factory=list)
    days: list[int] = field(default_factory=list)
    exit_index: list[int] = field(default_factory=list)
    exit_codes: list[int] = field(default_factory=list)
    exit_days: list[int] = field(default_factory=list)
    undated: int = 0
    before_start: int = 0


def _pick_signals(
    normalized: NormalizedInstances, market: Market, first_day: int | None
) -> _PickedSignals:
    """The active, dated signals on known tickers from ``first_day`` on: entries and exits."""
    code_of = market.code_of()
    picked = _PickedSignals()
    exits = normalized.exits or [False] * normalized.total
    for i, (ticker, day, on, leave) in enumerate(
        zip(normalized.tickers, normalized.days, normalized.active, exits, strict=True)
    ):
        if not on:
            continue
        code = code_of.get(ticker)
        if code is None:
            continue
        if day is None:
            picked.undated += 1
            continue
        number = date_to_day(day)
        if first_day is not None and number < first_day:
            picked.before_start += 1
            continue
        if leave:
            picked.exit_index.append(i)
            picked.exit_codes.append(code)
            picked.exit_days.append(number)
        else:
            picked.index.append(i)
            picked.codes.append(code)
            picked.days.append(number)
    return picked


def _signal_columns(
    normalized: NormalizedInstances, market: Market, first_day: int | None = None
) -> SignalColumns:
    """Per-signal arrays of the active, dated entries and exits on known tickers.

    Signals dated before ``first_day`` (warm-up rows) are counted, not kept.
    """
    picked = _pick_signals(normalized, market, first_day)
    index, codes, days = picked.index, picked.codes, picked.days
    exit_index, exit_codes, exit_days = picked.exit_index, picked.exit_codes, picked.exit_days
    undated, before = picked.undated, picked.before_start
    idx = np.asarray(index, dtype=np.int64)
    short_all = np.asarray(normalized.short, dtype=bool)
    short = short_all[idx] if len(idx) else np.zeros(0, bool)
    scores: FloatArray = np.asarray(
        [np.nan if s is None else s for s in normalized.scores], dtype=np.float64
    )
    weights: FloatArray | None = None
    if normalized.weights and any(w is not None for w in normalized.weights):
        every = np.asarray(
            [np.nan if w is None else w for w in normalized.weights], dtype=np.float64
        )
        weights = every[idx] if len(idx) else np.zeros(0)
    exit_idx = np.asarray(exit_index, dtype=np.int64)
    leaving = ExitSignals(
        codes=np.asarray(exit_codes, dtype=np.int64),
        days=np.asarray(exit_days, dtype=np.int64),
        short=short_all[exit_idx] if len(exit_idx) else np.zeros(0, bool),
    )
    return SignalColumns(
        codes=np.asarray(codes, dtype=np.int64),
        days=np.asarray(days, dtype=np.int64),
        short=short,
        scores=scores[idx] if len(idx) else np.zeros(0),
        weights=weights,
        index=idx,
        exits=leaving,
        exit_index=exit_idx,
        undated=undated,
        before_start=before,
    )


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
