"""The backtest's core: the simulation of a set of signals, its portfolio and its metrics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from strategyq.engine.market import FloatArray, IntArray, Market
from strategyq.engine.metrics import benchmark_closes, benchmark_return, performance_metrics
from strategyq.engine.portfolio import Portfolio, Selection, build, select
from strategyq.engine.signals import SignalColumns
from strategyq.engine.simulate import (
    NO_EXITS,
    BoolArray,
    Candidates,
    ExitSignals,
    Placement,
    simulate,
)
from strategyq.trademodel import TradeModel


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


def simulate_columns(
    market: Market, cols: SignalColumns, model: TradeModel, benchmark: Market | None
) -> Outcome:
    """:func:`simulate_and_measure` of one set of signal columns."""
    return simulate_and_measure(
        market,
        cols.codes,
        cols.days,
        cols.short,
        cols.scores,
        model,
        exits=cols.exits,
        weights=cols.weights,
        benchmark=benchmark,
    )
