"""Many signal sets on one market and one trade model, simulated at once.

A sweep scores every combination of its grid on the same bars. Simulating
them one by one repeats the same few dozen NumPy calls per combination on
small arrays, so the fixed cost of each call dominates. Here the signal sets
are concatenated, each tagged with its group, and every step runs once over
all of them:

- trades: every step of :func:`~strategyq.engine.simulate.simulate` is per
  signal, except the search for the exit that closes a trade, which only
  looks within the trade's group;
- selection: the fast path of :func:`~strategyq.engine.portfolio.select` (each
  trade fits a free slot) with the group as the first sort key, and with one
  slot (``max_positions`` 1) the chain of trades each taking the slot the one
  before it freed;
- the equity curve: the marks summed into the same (session, lag) cells, and
  the recurrence of ``portfolio._cell_recurrence`` run one *run* of cells at a
  time (cells sized on the same earlier session: one trade's holding) for
  every group at once, each run a cumulative sum that adds the same products
  in the same order as the one-by-one loop.

Every number is computed by the same operations in the same order as a single
backtest of that set, so each group's metrics equal, bit for bit, those
:func:`~strategyq.engine.outcome.simulate_and_measure` reports for it alone. A
group this path does not cover (scores or weights, several slots some trade
finds taken, no trade at all, an equity curve that reaches 0)
is simulated alone by ``simulate_and_measure``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from strategyq.engine.kernels import group_equity
from strategyq.engine.market import FloatArray, IntArray, Market
from strategyq.engine.metrics import (
    METRIC_NAMES,
    benchmark_closes,
    benchmark_metrics,
    benchmark_return,
    curve_metrics_rows,
    performance_metrics,
    trade_metrics_rows,
)
from strategyq.engine.outcome import simulate_columns
from strategyq.engine.portfolio import _cell_recurrence, _marks, _one_per_ticker
from strategyq.engine.signals import SignalColumns
from strategyq.engine.simulate import BoolArray, Candidates, ExitSignals, simulate
from strategyq.trademodel import TradeModel


def metrics_many(
    market: Market,
    sets: Sequence[SignalColumns],
    model: TradeModel,
    benchmark: Market | None = None,
) -> list[dict[str, Any]]:
    """Each signal set's ``performance_metrics``, as ``simulate_and_measure`` reports them.

    ``model`` must be resolved (no ``"auto"`` hold); ``benchmark`` as for
    :func:`~strategyq.engine.outcome.simulate_and_measure`.
    """
    out: list[dict[str, Any] | None] = [None] * len(sets)
    batched = [i for i, cols in enumerate(sets) if _plain(cols)]
    if len(batched) > 1:
        for i, metrics in _batched(market, [sets[i] for i in batched], model, benchmark).items():
            out[batched[i]] = metrics
    for i, cols in enumerate(sets):
        if out[i] is None:
            out[i] = simulate_columns(market, cols, model, benchmark).metrics
    return [m for m in out if m is not None]


def _plain(cols: SignalColumns) -> bool:
    """Whether the set has neither scores nor weights (they take the one-by-one path)."""
    return cols.weights is None and bool(np.all(np.isnan(cols.scores)))


@dataclass(frozen=True)
class _Taken:
    """The trades taken by every group that fits the fast path (candidate indices, ascending)."""

    taken: IntArray
    group: IntArray
    ok: BoolArray


def candidates(
    market: Market, sets: Sequence[SignalColumns], model: TradeModel
) -> tuple[Candidates, IntArray]:
    """Every set's signals simulated together: the candidates and each one's group."""
    group = np.concatenate([np.full(len(c.codes), g, dtype=np.int64) for g, c in enumerate(sets)])
    exit_group = np.concatenate(
        [np.full(len(c.exits), g, dtype=np.int64) for g, c in enumerate(sets)]
    )
    exits = ExitSignals(
        codes=np.concatenate([c.exits.codes for c in sets]),
        days=np.concatenate([c.exits.days for c in sets]),
        short=np.concatenate([c.exits.short for c in sets]),
    )
    cand, _ = simulate(
        market,
        np.concatenate([c.codes for c in sets]),
        np.concatenate([c.days for c in sets]),
        np.concatenate([c.short for c in sets]),
        model,
        exits,
        groups=(group, exit_group),
    )
    return cand, group[cand.source]


def _batched(
    market: Market, sets: Sequence[SignalColumns], model: TradeModel, benchmark: Market | None
) -> dict[int, dict[str, Any]]:
    """The metrics of every group the batched path covers, by group."""
    n = len(sets)
    cand, cand_group = candidates(market, sets, model)
    chosen = _select(market, cand, cand_group, model, n)
    curves = _equity(market, cand, chosen, model, n)
    if curves is None:
        return {}
    calendar, equity, ok = curves
    exposed = _exposed(market, calendar, cand, chosen, n)
    closes = benchmark_closes(benchmark, calendar) if benchmark is not None else None
    default_benchmark = None if benchmark is not None else benchmark_return(market)
    taken, taken_group = chosen.taken, chosen.group
    entry_at = np.searchsorted(calendar, market.day[cand.entry_row[taken]])
    alloc = equity[taken_group, entry_at]
    pnl = alloc / model.max_positions * cand.ret[taken]
    bounds = np.searchsorted(taken_group, np.arange(n + 1))
    capital = float(model.initial_capital)
    kept = np.flatnonzero(ok)
    curve_rows = curve_metrics_rows(
        equity[kept], calendar, exposed[kept], capital, default_benchmark
    )
    out: dict[int, dict[str, Any]] = {}
    trade_rows = trade_metrics_rows(
        cand.ret[taken],
        pnl,
        (cand.exit_row - cand.sig_row)[taken],
        cand.short[taken],
        bounds,
        kept.tolist(),
        calendar,
        curve_rows,
    )
    if trade_rows is not None:
        for g, curve_part, trade_part in zip(kept.tolist(), curve_rows, trade_rows, strict=True):
            metrics = {**curve_part, **trade_part, "alpha": None, "beta": None, "correlation": None}
            if closes is not None:
                curve = np.concatenate([[capital], equity[g, 1:]])
                metrics.update(benchmark_metrics(curve, closes))
            out[g] = {name: metrics[name] for name in METRIC_NAMES}
        return out
    for g, curve_part in zip(kept.tolist(), curve_rows, strict=True):
        mine = taken[bounds[g] : bounds[g + 1]]
        out[g] = performance_metrics(
            returns=cand.ret[mine],
            pnl=pnl[bounds[g] : bounds[g + 1]],
            holding=(cand.exit_row - cand.sig_row)[mine],
            calendar=calendar,
            equity=equity[g, 1:],
            exposed=exposed[g],
            initial_capital=capital,
            benchmark=default_benchmark,
            short=cand.short[mine],
            benchmark_closes=closes,
            curve_metrics=curve_part,
        )
    return out


def _select(market: Market, cand: Candidates, group: IntArray, model: TradeModel, n: int) -> _Taken:
    """``select``'s fast path for every group at once; ``ok`` is false where it does not apply."""
    offset = 0 if model.entry == "next_open" else 1
    enter = 2 * market.day[cand.entry_row] + offset
    leave = 2 * market.day[cand.exit_row] + np.where(cand.exit_at_open, 0, 1)
    code = market.code[cand.sig_row]
    ok = np.ones(n, dtype=bool)
    if len(cand) == 0:
        return _Taken(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), ok)
    # Without scores every rank ties: entry instant, then ticker, then the signal's order.
    order = np.lexsort((cand.source, code, enter, group))
    per_ticker = model.max_entries_per_ticker
    symbols = len(market.symbols)
    pool = order
    if model.max_positions == 1:
        # One slot: each trade is the first in entry order that enters once the one
        # before it has left (the slot is then free, and so is every ticker).
        pool = _one_per_ticker(order, enter, leave, group)
    else:
        if per_ticker == 1:
            pool = _one_per_ticker(order, enter, leave, group * symbols + code)
        elif per_ticker > 1:
            crowded = _peak_open_by(enter, leave, group * symbols + code, n * symbols)
            ok &= ~(crowded > per_ticker).reshape(n, symbols).any(axis=1)
        ok &= _peak_open_by(enter[pool], leave[pool], group[pool], n) <= model.max_positions
    pool = np.sort(pool)
    pool = pool[ok[group[pool]]]
    return _Taken(pool.astype(np.int64), group[pool], ok)


def _peak_open_by(enter: IntArray, leave: IntArray, group: IntArray, groups: int) -> IntArray:
    """Most trades open at once in each group, if every candidate were taken."""
    peaks = np.zeros(groups, dtype=np.int64)
    if len(enter) == 0:
        return peaks
    # As portfolio._peak_open: a leave sorts before an enter at the same instant.
    low = int(min(enter.min(), leave.min()))
    span = 2 * (int(max(enter.max(), leave.max())) - low + 1)
    base = group * span
    keys = np.concatenate([base + 2 * (enter - low) + 1, base + 2 * (leave - low)])
    keys.sort()
    running = np.cumsum((keys & 1) * 2 - 1)
    np.maximum.at(peaks, keys // span, running)
    return peaks


def _equity(
    market: Market, cand: Candidates, chosen: _Taken, model: TradeModel, n: int
) -> tuple[IntArray, FloatArray, BoolArray] | None:
    """The calendar, each group's equity after 0 … sessions sessions, and which groups hold.

    The same marks, steps and (session, lag) cells as ``portfolio.build``; a group
    whose cells need the general recurrence (several on one session, a curve
    that meets 0 or a non-finite value) is marked not ``ok``.
    """
    calendar = market.calendar()
    sessions = len(calendar)
    capital = float(model.initial_capital)
    ok = chosen.ok.copy()
    equity = np.full((n, sessions + 1), capital)
    taken = chosen.taken
    if sessions == 0:
        return None
    if len(taken) == 0:
        return calendar, equity, ok
    first_mark = np.minimum(cand.sig_row[taken] + 1, cand.exit_row[taken])
    length = cand.exit_row[taken] - first_mark + 1
    # Each market row's calendar session, looked up once for all marks.
    session_of = np.searchsorted(calendar, market.day)
    kernel = group_equity() if int(length.sum()) >= KERNEL_MIN_MARKS else None
    if kernel is not None and bool(np.all(chosen.group[1:] >= chosen.group[:-1])):
        kernel(
            first_mark,
            cand.exit_row[taken],
            cand.entry_price[taken],
            cand.exit_price[taken],
            cand.short[taken],
            chosen.group,
            session_of[cand.entry_row[taken]],
            session_of,
            market.close,
            float(model.cost_per_side),
            float(model.max_positions),
            capital,
            equity,
            ok,
        )
        # A group without a trade has no cell: the general loop decides it, as below.
        ok &= np.bincount(chosen.group, minlength=n) > 0
        return calendar, equity, ok
    trade = np.repeat(np.arange(len(taken)), length)
    starts = np.cumsum(length) - length
    row = np.arange(len(trade)) + np.repeat(first_mark - starts, length)
    is_exit = row == cand.exit_row[taken][trade]
    value = _marks(market, cand, taken, trade, row, is_exit, model.cost_per_side)
    step = np.diff(value, prepend=0.0)
    step[starts] = value[starts]
    day_index = session_of[row]
    sized_on = session_of[cand.entry_row[taken]][trade]
    lag = day_index + 1 - sized_on
    sized = step / model.max_positions
    mark_group = chosen.group[trade]
    width = int(lag.max()) + 1
    # Each mark's cell; a cell's marks are summed in the marks' order, as bincount does
    # in portfolio._equity_curve. Marks usually come in cell order already, one per cell.
    flat = (mark_group * sessions + day_index) * width + lag
    if bool(np.all(flat[1:] > flat[:-1])):
        # One mark per cell: its (group, session, lag) are the mark's; 0.0 + the mark,
        # as bincount's sum of one weight.
        cell_group, rows, lags = mark_group, day_index, lag
        summed: FloatArray = sized + 0.0
    else:
        _, first, cell_of = np.unique(flat, return_index=True, return_inverse=True)
        summed = np.bincount(cell_of.ravel(), weights=sized, minlength=len(first)).astype(float)
        cell_group, rows, lags = mark_group[first], day_index[first], lag[first]
    keep = (summed != 0.0) & (lags > 0)
    ok &= np.bincount(cell_group[keep], minlength=n) > 0  # no cell: the general loop decides
    use = keep & ok[cell_group]
    if not use.all():
        cell_group, rows, lags, summed = cell_group[use], rows[use], lags[use], summed[use]
    # Runs of cells sized on one session (one trade's holding) are summed a run per
    # round for all groups at once; a group with short runs (trades overlapping,
    # so cells alternate between them) would need a round per cell: it takes the
    # one-by-one loop instead.
    ref = rows + 1 - lags
    new_run = np.r_[True, (cell_group[1:] != cell_group[:-1]) | (ref[1:] != ref[:-1])]
    runs = np.bincount(cell_group[new_run], minlength=n)
    cells_in = np.bincount(cell_group, minlength=n)
    one_by_one = ok & (runs * LONG_RUN > cells_in)
    for g in np.flatnonzero(one_by_one).tolist():
        mine = cell_group == g
        curve = _cell_recurrence(rows[mine] * width + lags[mine], summed[mine], sessions, width,
                                 capital)  # fmt: skip
        if curve is None:
            ok[g] = False
        else:
            equity[g] = curve
    batch = ok & ~one_by_one
    if one_by_one.any():
        use = np.flatnonzero(batch[cell_group])
        cell_group, rows, lags, summed = cell_group[use], rows[use], lags[use], summed[use]
    values = _recurrence_runs(cell_group, rows, lags, summed, n, capital)
    # The curve: capital before a group's first cell, then each cell's value carried on.
    at = np.zeros((n, sessions + 1), dtype=np.int64)
    at.ravel()[cell_group * (sessions + 1) + rows + 1] = np.arange(1, len(rows) + 1)
    np.maximum.accumulate(at, axis=1, out=at)
    filled = np.concatenate([[capital], values])[at]
    equity[batch] = filled[batch]
    finite = np.all(np.isfinite(equity) & (equity != 0.0), axis=1)
    ok &= finite
    return calendar, equity, ok


LONG_RUN = 2
"""Fewest cells per run, on average, for a group's curve to be summed in runs."""

KERNEL_MIN_MARKS = 20_000
"""Fewest marks (held sessions of all trades) for the curves to be computed by the compiled
loop (:mod:`strategyq.engine.kernels`); below, NumPy takes a few milliseconds, less than
importing numba once."""


def _recurrence_runs(
    group: IntArray, rows: IntArray, lags: IntArray, weights: FloatArray, n: int, capital: float
) -> FloatArray:
    """``portfolio._cell_recurrence``'s values after each cell, every group at once.

    Cells are sorted by (group, session, lag). Cell ``i`` adds
    ``weights[i] * E[rows[i] + 1 - lags[i]]`` to the value before it. A *run* is
    a stretch of consecutive cells of one group sized on the same session
    (``rows - lags``): its reference value lies before the run, so it is known
    when the run starts, and the run is a cumulative sum of the same products
    the one-by-one loop adds, in the same order. Runs are taken in rounds: the
    k-th run of every group in round k.
    """
    total = len(rows)
    values = np.empty(total)
    if total == 0:
        return values
    ref = rows + 1 - lags
    first_in_group = np.r_[True, group[1:] != group[:-1]]
    new_run = first_in_group | np.r_[True, ref[1:] != ref[:-1]]
    run_start = np.flatnonzero(new_run)
    run_end = np.append(run_start[1:], total)
    run_group = group[run_start]
    group_first_run = np.flatnonzero(np.r_[True, run_group[1:] != run_group[:-1]])
    # The run's round: its position among its group's runs.
    rank = np.arange(len(run_start)) - np.repeat(
        group_first_run, np.diff(np.append(group_first_run, len(run_start)))
    )
    group_start = np.searchsorted(group, np.arange(n + 1))
    # E[ref] is the value after the group's last cell on a session before ref: a cell
    # before the run, as ref <= the run's first session.
    stride = int(rows.max()) + 2
    ref_cell = np.searchsorted(group * stride + rows, run_group * stride + ref[run_start]) - 1
    has_ref = ref_cell >= group_start[run_group]
    by_round = np.argsort(rank, kind="stable")
    round_bounds = np.searchsorted(rank[by_round], np.arange(int(rank.max()) + 2))
    for k in range(len(round_bounds) - 1):
        runs = by_round[round_bounds[k] : round_bounds[k + 1]]
        if len(runs) == 0:
            continue
        starts, ends = run_start[runs], run_end[runs]
        before = np.where(
            starts > group_start[run_group[runs]], values[np.maximum(starts - 1, 0)], capital
        )
        reference = np.where(has_ref[runs], values[np.maximum(ref_cell[runs], 0)], capital)
        width = int((ends - starts).max())
        offsets = np.arange(width)
        cell = starts[:, None] + offsets[None, :]
        inside = offsets[None, :] < (ends - starts)[:, None]
        safe = np.where(inside, cell, 0)
        terms = np.zeros((len(runs), width + 1))
        terms[:, 0] = before
        terms[:, 1:] = np.where(inside, weights[safe] * reference[:, None], 0.0)
        running = np.cumsum(terms, axis=1)[:, 1:]
        values[cell[inside]] = running[inside]
    return values


def _exposed(
    market: Market, calendar: IntArray, cand: Candidates, chosen: _Taken, n: int
) -> BoolArray:
    """Each group's ``portfolio._exposed``: whether any trade is held at each session's close."""
    sessions = len(calendar)
    taken = chosen.taken
    first_mark = np.minimum(cand.sig_row[taken] + 1, cand.exit_row[taken])
    held_from = np.searchsorted(calendar, market.day[first_mark])
    held_to = np.searchsorted(calendar, market.day[cand.exit_row[taken]]) + 1
    base = chosen.group * (sessions + 1)
    size = n * (sessions + 1)
    opened = np.bincount(base + held_from, minlength=size) - np.bincount(
        base + held_to, minlength=size
    )
    held: BoolArray = np.cumsum(opened.reshape(n, sessions + 1)[:, :sessions], axis=1) > 0
    return held
