"""Signals → candidate trades: entry, exit, stops and costs, vectorised over all signals.

Sessions are rows of :class:`~strategyq.engine.market.Market`. A signal's
session is the ticker's last session on or before the signal's date. The trade
enters at the next session's open (``next_open``) or at that session's close
(``close``) and is held through the sessions ``sig+1 … sig+hold_days``; stops
are checked on each of those sessions in order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from strategyq.engine.market import FloatArray, IntArray, Market
from strategyq.engine.model import TradeModel

BoolArray = npt.NDArray[np.bool_]

EXIT_HOLD = 0
EXIT_STOP = 1
EXIT_TARGET = 2
EXIT_DATA_END = 3
EXIT_REASONS = ("hold", "stop_loss", "take_profit", "data_end")


@dataclass(frozen=True)
class Candidates:
    """One row per signal that can trade; ``source`` indexes the caller's signal arrays."""

    source: IntArray
    sig_row: IntArray
    entry_row: IntArray
    exit_row: IntArray
    entry_price: FloatArray
    exit_price: FloatArray
    reason: IntArray
    short: BoolArray
    ret: FloatArray

    def __len__(self) -> int:
        return len(self.source)


@dataclass(frozen=True)
class Placement:
    """What happened to each signal before any trade was simulated (counts)."""

    outside_data: int
    no_next_session: int
    no_price: int


def place_signals(
    market: Market, codes: IntArray, days: IntArray
) -> tuple[IntArray, BoolArray, BoolArray]:
    """Each signal's session row, whether it lies in its ticker's data, whether it is the last.

    ``codes`` must be valid ticker codes of ``market``.
    """
    pos = np.searchsorted(market.key, market.pack(codes, days), side="right") - 1
    safe = np.clip(pos, 0, max(market.rows - 1, 0))
    last = market.ends[codes] - 1 if len(codes) else np.zeros(0, dtype=np.int64)
    inside = (pos >= 0) & (market.code[safe] == codes) & (days <= market.day[last])
    return safe.astype(np.int64), inside, safe == last


def simulate(
    market: Market, codes: IntArray, days: IntArray, short: BoolArray, model: TradeModel
) -> tuple[Candidates, Placement]:
    """Simulate one trade per signal (``codes``/``days``/``short`` are per-signal arrays)."""
    sig_row, inside, on_last = place_signals(market, codes, days)
    last_row = market.ends[codes] - 1 if len(codes) else np.zeros(0, dtype=np.int64)
    next_open = model.entry == "next_open"
    tradable = inside & ~on_last if next_open else inside.copy()
    no_next = int(np.count_nonzero(inside & on_last)) if next_open else 0
    entry_row = sig_row + 1 if next_open else sig_row.copy()
    entry_row = np.minimum(entry_row, last_row)
    prices = market.open if next_open else market.close
    entry_price = prices[entry_row]
    priced = np.isfinite(entry_price) & (entry_price > 0)
    no_price = int(np.count_nonzero(tradable & ~priced))
    keep = np.flatnonzero(tradable & priced)
    sig_row, entry_row, last_row = sig_row[keep], entry_row[keep], last_row[keep]
    entry_price, is_short = entry_price[keep], short[keep]

    planned = sig_row + model.hold_days
    exit_row = np.minimum(planned, last_row)
    reason = np.where(planned > last_row, EXIT_DATA_END, EXIT_HOLD).astype(np.int64)
    exit_price = market.close[exit_row].copy()
    if model.stop_loss_pct is not None or model.take_profit_pct is not None:
        _apply_stops(market, model, sig_row, exit_row, entry_price, is_short, exit_price, reason)

    priced_exit = np.flatnonzero(np.isfinite(exit_price) & (exit_price > 0))
    if len(priced_exit) < len(keep):
        no_price += len(keep) - len(priced_exit)
        keep, sig_row, entry_row, exit_row = (
            keep[priced_exit],
            sig_row[priced_exit],
            entry_row[priced_exit],
            exit_row[priced_exit],
        )
        entry_price, exit_price = entry_price[priced_exit], exit_price[priced_exit]
        is_short, reason = is_short[priced_exit], reason[priced_exit]
    cost = model.cost_per_side
    buy = np.where(is_short, exit_price, entry_price) * (1.0 + cost)
    sell = np.where(is_short, entry_price, exit_price) * (1.0 - cost)
    # Short return is measured on the (cost-adjusted) entry: (sold - bought back) / sold.
    ret = np.where(is_short, (sell - buy) / sell, sell / buy - 1.0)
    candidates = Candidates(
        source=keep.astype(np.int64),
        sig_row=sig_row,
        entry_row=entry_row,
        exit_row=exit_row,
        entry_price=entry_price,
        exit_price=exit_price,
        reason=reason,
        short=is_short,
        ret=ret,
    )
    outside = int(np.count_nonzero(~inside))
    return candidates, Placement(outside, no_next, no_price)


def _apply_stops(
    market: Market,
    model: TradeModel,
    sig_row: IntArray,
    exit_row: IntArray,
    entry: FloatArray,
    short: BoolArray,
    exit_price: FloatArray,
    reason: IntArray,
) -> None:
    """Move exits forward to the first held session that touches a stop or target (in place)."""
    sign = np.where(short, -1.0, 1.0)
    inf = np.inf
    stop = (
        entry * (1.0 - sign * model.stop_loss_pct / 100.0)
        if model.stop_loss_pct is not None
        else np.where(short, inf, -inf)
    )
    target = (
        entry * (1.0 + sign * model.take_profit_pct / 100.0)
        if model.take_profit_pct is not None
        else np.where(short, -inf, inf)
    )
    # Work in "long space": a short's prices are negated, so one set of comparisons serves both.
    stop_l, target_l = sign * stop, sign * target
    live = np.arange(len(sig_row))
    for step in range(1, model.hold_days + 1):
        live = live[sig_row[live] + step <= exit_row[live]]
        if len(live) == 0:
            break
        row = sig_row[live] + step
        s = sign[live]
        opened = s * market.open[row]
        worst = np.where(short[live], -market.high[row], market.low[row])
        best = np.where(short[live], -market.low[row], market.high[row])
        st, tg = stop_l[live], target_l[live]
        gap_stop = opened <= st
        gap_target = ~gap_stop & (opened >= tg)
        hit_stop = ~gap_stop & ~gap_target & (worst <= st)
        hit_target = ~gap_stop & ~gap_target & ~hit_stop & (best >= tg)
        fill = np.select(
            [gap_stop | gap_target, hit_stop, hit_target], [opened, st, tg], default=np.nan
        )
        done = gap_stop | gap_target | hit_stop | hit_target
        idx = live[done]
        exit_price[idx] = s[done] * fill[done]
        exit_row[idx] = row[done]
        reason[idx] = np.where((gap_stop | hit_stop)[done], EXIT_STOP, EXIT_TARGET)
        live = live[~done]
