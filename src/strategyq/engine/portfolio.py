"""Candidate trades → the portfolio: slot-limited selection, sizing and the daily equity curve.

Time on a session is two instants: its open (``2*day``) and its close
(``2*day + 1``). A trade holds a slot from its entry instant to the close of
its exit session; a slot freed at a close can be taken by an entry at that
same close. Each trade is sized at ``1/max_positions`` of the equity marked at
the close of the calendar session before its entry session.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

from strategyq.engine.market import FloatArray, IntArray, Market
from strategyq.engine.model import TradeModel
from strategyq.engine.simulate import BoolArray, Candidates


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


def select(
    market: Market, cand: Candidates, scores: FloatArray, model: TradeModel
) -> tuple[IntArray, IntArray]:
    """Pick the trades that find a free slot; returns (taken indices, entry order of all).

    When more trades enter at one instant than there are free slots, the
    highest ``scores`` win (missing scores count as lowest), then the
    alphabetically first ticker, then the earlier instance.
    """
    offset = 0 if model.entry == "next_open" else 1
    enter = 2 * market.day[cand.entry_row] + offset
    leave = 2 * market.day[cand.exit_row] + 1
    ranked = np.where(np.isnan(scores), -np.inf, scores)
    order = np.lexsort((cand.source, market.code[cand.sig_row], -ranked, enter))
    if len(order) == 0:
        return order.astype(np.int64), order.astype(np.int64)
    if _peak_open(enter, leave) <= model.max_positions:
        return np.sort(order).astype(np.int64), order.astype(np.int64)
    enter_o, leave_o = enter[order].tolist(), leave[order].tolist()
    taken: list[int] = []
    held: list[int] = []
    limit = model.max_positions
    for i, (when, until) in enumerate(zip(enter_o, leave_o, strict=True)):
        while held and held[0] <= when:
            heapq.heappop(held)
        if len(held) < limit:
            heapq.heappush(held, until)
            taken.append(i)
    picked = order[np.asarray(taken, dtype=np.int64)]
    return np.sort(picked).astype(np.int64), order.astype(np.int64)


def _peak_open(enter: IntArray, leave: IntArray) -> int:
    """Most trades open at once if every candidate were taken."""
    times = np.concatenate([enter, leave])
    # At equal instants a leave (-1) sorts before an enter (+1): a freed slot is reusable.
    steps = np.concatenate([np.ones(len(enter)), -np.ones(len(leave))])
    order = np.lexsort((steps, times))
    return int(np.max(np.cumsum(steps[order])))


def build(market: Market, cand: Candidates, taken: IntArray, model: TradeModel) -> Portfolio:
    """Size the taken trades and mark the portfolio to market at every session's close."""
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
    weights: FloatArray = np.asarray(
        np.bincount(
            day_index * width + lag, weights=step / model.max_positions, minlength=sessions * width
        ),
        dtype=np.float64,
    ).reshape(sessions, width)
    equity = _recurrence(weights, capital)
    alloc = equity[np.searchsorted(calendar, market.day[cand.entry_row[taken]])]
    pnl = alloc / model.max_positions * cand.ret[taken]
    exposed = np.zeros(sessions, dtype=bool)
    exposed[day_index] = True
    return Portfolio(taken, pnl, calendar, equity[1:], exposed)


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
    short = cand.short[taken][trade]
    price = np.where(is_exit, cand.exit_price[taken][trade], market.close[row])
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
