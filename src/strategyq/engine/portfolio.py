"""Candidate trades → the portfolio: slot-limited selection, sizing and the daily equity curve.

Time on a session is two instants: its open (``2*day``) and its close
(``2*day + 1``). A trade holds a slot from its entry instant to its exit
instant: the open of its exit session when it fills there (an exit signal
at the next open, a stop or target the open gapped through), else that
session's close. A slot freed at an instant can be taken by an entry at that
same instant (exits fill before entries). Each trade is sized at
``1/max_positions`` of the equity marked at the close of the calendar session
before its entry session.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

from strategyq.engine.market import FloatArray, IntArray, Market
from strategyq.engine.simulate import BoolArray, Candidates
from strategyq.trademodel import TradeModel


@dataclass(frozen=True)
class Portfolio:
    """The taken trades (indices into the candidates) and the equity they make.

    Attributes:
        taken: candidate indices of the trades made, in entry order.
        pnl: each taken trade's profit in currency.
        calendar: the curve's sessions (days since 1970-01-01).
        equity: equity at each calendar session's close.
        exposed: whether any trade was open during each session.
    """

    taken: IntArray
    pnl: FloatArray
    calendar: IntArray
    equity: FloatArray
    exposed: BoolArray


@dataclass(frozen=True)
class Selection:
    """The candidates taken, each one's fraction of equity, and why others were not.

    Attributes:
        taken: candidate indices of the trades made, ascending.
        fraction: each taken trade's fraction of equity, or ``None`` when every
            trade takes ``1/max_positions`` (no instance carries a weight).
        skipped_slots: candidates that found no free slot (``max_positions``).
        ignored_open: entries on a ticker that already held
            ``max_entries_per_ticker`` positions.
        skipped_exposure: weighted entries that found no exposure left.
        scaled_down: weighted entries cut to the exposure left.
    """

    taken: IntArray
    fraction: FloatArray | None
    skipped_slots: int = 0
    ignored_open: int = 0
    skipped_exposure: int = 0
    scaled_down: int = 0


EXPOSURE_CAP = 1.0
"""Most total weight open at once: a weighted entry gets at most 1 − the weights open."""


def select(
    market: Market,
    cand: Candidates,
    scores: FloatArray,
    model: TradeModel,
    weights: FloatArray | None = None,
) -> Selection:
    """Pick the trades that find a free slot, a free ticker and (when weighted) exposure left.

    Candidates are taken in entry order; when more trades enter at one instant
    than there is room for, the highest ``scores`` win (missing scores count as
    lowest), then the alphabetically first ticker, then the earlier instance.
    ``weights`` (NaN = no weight) switch sizing from ``1/max_positions`` to the
    weight, capped at 1, with the total open weight capped at 1.
    """
    offset = 0 if model.entry == "next_open" else 1
    enter = 2 * market.day[cand.entry_row] + offset
    leave = 2 * market.day[cand.exit_row] + np.where(cand.exit_at_open, 0, 1)
    code = market.code[cand.sig_row]
    ranked = np.where(np.isnan(scores), -np.inf, scores)
    order = np.lexsort((cand.source, code, -ranked, enter))
    weighted = weights is not None and bool(np.any(np.isfinite(weights)))
    if len(order) == 0:
        return Selection(order.astype(np.int64), np.zeros(0) if weighted else None)
    per_ticker = model.max_entries_per_ticker
    if not weighted:
        pool: IntArray | None = order
        if per_ticker == 1:
            pool = _one_per_ticker(order, enter, leave, code)
        elif per_ticker > 1 and _peak_open(enter, leave, code) > per_ticker:
            pool = None
        if pool is not None and _peak_open(enter[pool], leave[pool]) <= model.max_positions:
            ignored = len(order) - len(pool)
            return Selection(np.sort(pool).astype(np.int64), None, ignored_open=ignored)
    base = np.full(len(order), 1.0 / model.max_positions)
    if weighted:
        assert weights is not None
        base = np.where(np.isfinite(weights), np.minimum(weights, 1.0), base)
    return _walk(order, enter, leave, code, base, model, weighted)


def _walk(
    order: IntArray,
    enter: IntArray,
    leave: IntArray,
    code: IntArray,
    base: FloatArray,
    model: TradeModel,
    weighted: bool,
) -> Selection:
    """The general selection: one pass in entry order with a heap of open trades."""
    taken: list[int] = []
    fractions: list[float] = []
    held: list[tuple[int, int, float]] = []
    open_on: dict[int, int] = {}
    limit, per_ticker = model.max_positions, model.max_entries_per_ticker
    exposure = 0.0
    skipped = ignored = no_room = scaled = 0
    for i, when, until, c, want in zip(
        order.tolist(),
        enter[order].tolist(),
        leave[order].tolist(),
        code[order].tolist(),
        base[order].tolist(),
        strict=True,
    ):
        while held and held[0][0] <= when:
            _, gone, part = heapq.heappop(held)
            open_on[gone] -= 1
            exposure -= part
        if not held:
            exposure = 0.0  # no drift from many additions and subtractions
        if per_ticker and open_on.get(c, 0) >= per_ticker:
            ignored += 1
            continue
        if len(held) >= limit:
            skipped += 1
            continue
        if weighted:
            room = EXPOSURE_CAP - exposure
            if want > room + 1e-12:
                if room <= 1e-9:
                    no_room += 1
                    continue
                want = room
                scaled += 1
        heapq.heappush(held, (until, c, want))
        open_on[c] = open_on.get(c, 0) + 1
        exposure += want
        taken.append(i)
        fractions.append(want)
    picked = np.asarray(taken, dtype=np.int64)
    by_index = np.argsort(picked, kind="stable")
    fraction = np.asarray(fractions, dtype=np.float64)[by_index] if weighted else None
    return Selection(picked[by_index], fraction, skipped, ignored, no_room, scaled)


def _one_per_ticker(order: IntArray, enter: IntArray, leave: IntArray, code: IntArray) -> IntArray:
    """The candidates taken when each ticker holds one trade at a time (slots aside).

    Per ticker, in entry order: take the first, skip every entry before it
    leaves, take the next, and so on. Each candidate points to the one taken
    after it; the chains from each ticker's first candidate are followed all
    tickers at once.
    """
    # The entry order within each ticker: the same ranking, grouped by ticker (stable).
    grouped = order[np.argsort(code[order], kind="stable")]
    g_code, g_enter = code[grouped], enter[grouped]
    low = int(min(g_enter.min(), leave.min()))
    span = int(max(g_enter.max(), leave.max())) - low + 2
    keys = g_code * span + (g_enter - low)
    position = np.arange(len(grouped))
    after = np.searchsorted(keys, g_code * span + (leave[grouped] - low), side="left")
    after = np.maximum(after, position + 1)
    ends = np.searchsorted(g_code, g_code, side="right")
    after = np.where(after < ends, after, -1)
    first = np.flatnonzero(np.r_[True, g_code[1:] != g_code[:-1]])
    chosen = np.zeros(len(grouped), dtype=bool)
    frontier = first
    while len(frontier):
        chosen[frontier] = True
        frontier = after[frontier]
        frontier = frontier[frontier >= 0]
    picked: IntArray = grouped[chosen]
    return picked


def _peak_open(enter: IntArray, leave: IntArray, group: IntArray | None = None) -> int:
    """Most trades open at once (within one ``group``, when given) if every candidate were taken."""
    if len(enter) == 0:
        return 0
    # One sortable key per event: (group, instant, kind) with a leave (0) before an enter (1)
    # at equal instants, so a freed slot is reusable. A plain sort of int64 beats a lexsort.
    low = int(min(enter.min(), leave.min()))
    span = 2 * (int(max(enter.max(), leave.max())) - low + 1)
    base = np.zeros(len(enter), dtype=np.int64) if group is None else group * span
    keys = np.concatenate([base + 2 * (enter - low) + 1, base + 2 * (leave - low)])
    keys.sort()
    steps = (keys & 1) * 2 - 1
    # Every group's trades all leave, so the running count is back to 0 at each group's end.
    return int(np.max(np.cumsum(steps)))


def build(
    market: Market,
    cand: Candidates,
    taken: IntArray,
    model: TradeModel,
    fraction: FloatArray | None = None,
) -> Portfolio:
    """Size the taken trades and mark the portfolio to market at every session's close.

    Each trade takes ``fraction`` of the equity (per taken trade), or
    ``1/max_positions`` when ``fraction`` is ``None``.
    """
    calendar = market.calendar()
    sessions = len(calendar)
    capital = float(model.initial_capital)
    if len(taken) == 0 or sessions == 0:
        return Portfolio(
            taken=taken,
            pnl=np.zeros(len(taken)),
            calendar=calendar,
            equity=np.full(sessions, capital),
            exposed=np.zeros(sessions, dtype=bool),
        )
    # A close entry on the ticker's last session is marked (and costed) on that session.
    first_mark = np.minimum(cand.sig_row[taken] + 1, cand.exit_row[taken])
    length = cand.exit_row[taken] - first_mark + 1
    trade = np.repeat(np.arange(len(taken)), length)
    starts = np.cumsum(length) - length
    row = first_mark[trade] + (np.arange(len(trade)) - starts[trade])
    is_exit = row == cand.exit_row[taken][trade]
    value = _marks(market, cand, taken, trade, row, is_exit, model.cost_per_side)
    step = np.diff(value, prepend=0.0)
    step[starts] = value[starts]
    day_index = np.searchsorted(calendar, market.day[row])
    # Equity index e means "after e sessions"; a trade is sized on the index of its entry session.
    sized_on = np.searchsorted(calendar, market.day[cand.entry_row[taken]])[trade]
    lag = day_index + 1 - sized_on
    width = int(lag.max()) + 1
    sized = step / model.max_positions if fraction is None else step * fraction[trade]
    equity = _equity_curve(day_index * width + lag, sized, sessions, width, capital)
    alloc = equity[np.searchsorted(calendar, market.day[cand.entry_row[taken]])]
    if fraction is None:
        pnl = alloc / model.max_positions * cand.ret[taken]
    else:
        pnl = alloc * fraction * cand.ret[taken]
    exposed = _exposed(market, calendar, first_mark, cand.exit_row[taken], sessions)
    return Portfolio(taken, pnl, calendar, equity[1:], exposed)


def _equity_curve(
    flat: IntArray, sized: FloatArray, sessions: int, width: int, capital: float
) -> FloatArray:
    """The equity after 0 … ``sessions`` sessions, from the sized marks' (session, lag) cells."""
    # The (session, lag) weights, each cell summed in the marks' order. A dense bincount
    # when the matrix is not much larger than the marks; else only the cells with marks
    # (a sort, not a matrix of sessions × the longest holding): the same sums either way.
    dense: FloatArray | None = None
    if sessions * width <= DENSE_CELLS_PER_MARK * len(flat):
        dense = np.asarray(
            np.bincount(flat, weights=sized, minlength=sessions * width), dtype=np.float64
        )
        cells = np.flatnonzero(dense)
        summed: FloatArray = dense[cells]
    else:
        cells, cell_of = np.unique(flat, return_inverse=True)
        summed = np.asarray(
            np.bincount(cell_of.ravel(), weights=sized, minlength=len(cells)), dtype=np.float64
        )
    equity = _cell_recurrence(cells, summed, sessions, width, capital)
    if equity is None:
        if dense is None:
            dense = np.zeros(sessions * width)
            dense[cells] = summed
        equity = _recurrence(dense.reshape(sessions, width), capital)
    return equity


def _exposed(
    market: Market, calendar: IntArray, first_mark: IntArray, exit_row: IntArray, sessions: int
) -> BoolArray:
    """Whether any trade is held at each session's close."""
    # Held from the first marked session to the exit session, including calendar sessions
    # on which the ticker itself has no bar.
    held_from = np.searchsorted(calendar, market.day[first_mark])
    held_to = np.searchsorted(calendar, market.day[exit_row]) + 1
    opened = np.bincount(held_from, minlength=sessions + 1) - np.bincount(
        held_to, minlength=sessions + 1
    )
    return np.cumsum(opened[:sessions]) > 0


def _marks(
    market: Market,
    cand: Candidates,
    taken: IntArray,
    trade: IntArray,
    row: IntArray,
    is_exit: BoolArray,
    cost: float,
) -> FloatArray:
    """Each held session's return of its trade, as if closed at that session's close (net)."""
    entry = cand.entry_price[taken][trade]
    price = market.close[row]
    price[is_exit] = cand.exit_price[taken][trade[is_exit]]
    if not cand.short[taken].any():
        # Long only: the same products as below, without the per-mark selections.
        value_long: FloatArray = (price * (1.0 - cost)) / (entry * (1.0 + cost)) - 1.0
        return np.where(np.isfinite(value_long), value_long, 0.0)
    short = cand.short[taken][trade]
    buy = np.where(short, price, entry) * (1.0 + cost)
    sell = np.where(short, entry, price) * (1.0 - cost)
    value: FloatArray = np.where(short, (sell - buy) / sell, sell / buy - 1.0)
    # A session with no close marks the trade flat; the exit always has a price, so the
    # marks still add up to the trade's return.
    return np.where(np.isfinite(value), value, 0.0)


def _recurrence(weights: FloatArray, capital: float) -> FloatArray:
    """``E[t+1] = E[t] + Σ_lag weights[t, lag] · E[t+1-lag]`` with ``E[0] = capital``."""
    sessions, width = weights.shape
    padded = np.zeros(width + sessions)
    padded[:width] = capital
    reversed_w = weights[:, :0:-1].copy()
    active = np.flatnonzero(weights.any(axis=1)).tolist()
    base = width - 1
    done = 0
    for t in active:
        if t > done:
            padded[base + done + 1 : base + t + 1] = padded[base + done]
        padded[base + t + 1] = padded[base + t] + float(reversed_w[t] @ padded[t + 1 : t + width])
        done = t + 1
    padded[base + done + 1 :] = padded[base + done]
    equity: FloatArray = padded[base:]
    return equity


DENSE_CELLS_PER_MARK = 8
"""The weights matrix is built dense while it has at most this many cells per mark."""


def _cell_recurrence(
    cells: IntArray, summed: FloatArray, sessions: int, width: int, capital: float
) -> FloatArray | None:
    """:func:`_recurrence` one (session, lag) cell at a time, in plain floats.

    ``cells`` are the flat indices ``t * width + lag`` of the weights matrix
    that hold marks (ascending) and ``summed`` their values. Each cell adds
    ``w · E[t+1-lag]`` to the running equity, in the cells' order (a session's
    cells by lag); with one cell per session (one trade open at a time: the
    usual case) that is the general loop's dot product with one non-zero term,
    the very same bits. It needs no dense matrix and no dot product over the
    whole lag width per session, and gives the same values whether one
    backtest or a sweep's many are computed (:mod:`strategyq.engine.batch`).
    Returns ``None`` when there is no cell, or when the curve meets a value at
    which the sign of a zero could matter (0, inf, NaN): the general loop
    decides those.
    """
    rows, lags = np.divmod(cells, width)
    # Lag 0 never enters the general loop's dot product (it would be E[t+1] itself).
    keep = (summed != 0.0) & (lags > 0)
    rows, lags = rows[keep], lags[keep]
    if len(rows) == 0:
        return None
    values = summed[keep].tolist()
    equity = [capital] * (sessions + 1)
    done = 0
    current = capital
    for t, lag, w in zip(rows.tolist(), lags.tolist(), values, strict=True):
        if t > done:
            equity[done + 1 : t + 1] = [current] * (t - done)
        current = current + w * equity[t + 1 - lag]
        equity[t + 1] = current
        done = t + 1
    equity[done + 1 :] = [current] * (sessions - done)
    out: FloatArray = np.asarray(equity, dtype=np.float64)
    if not bool(np.all(np.isfinite(out) & (out != 0.0))):
        return None
    return out
