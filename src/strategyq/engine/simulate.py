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
from strategyq.trademodel import TradeModel

BoolArray = npt.NDArray[np.bool_]

EXIT_HOLD = 0
EXIT_STOP = 1
EXIT_TARGET = 2
EXIT_DATA_END = 3
EXIT_SIGNAL = 4
EXIT_TRAILING = 5
EXIT_REASONS = ("hold", "stop_loss", "take_profit", "data_end", "exit_signal", "trailing_stop")


@dataclass(frozen=True)
class Candidates:
    """One row per signal that can trade; ``source`` indexes the caller's signal arrays.

    ``exit_at_open`` marks trades that leave at their exit session's open (an
    exit instance filled at the next open, or a stop or target the open gapped
    through): their slot is free from that open on. ``exit_source`` is the
    index of the exit signal that closed the trade, or -1.
    """

    source: IntArray
    sig_row: IntArray
    entry_row: IntArray
    exit_row: IntArray
    entry_price: FloatArray
    exit_price: FloatArray
    reason: IntArray
    short: BoolArray
    ret: FloatArray
    exit_at_open: BoolArray
    exit_source: IntArray

    def __len__(self) -> int:
        return len(self.source)


@dataclass(frozen=True)
class Placement:
    """What happened to each signal before any trade was simulated (counts)."""

    outside_data: int
    no_next_session: int
    no_price: int
    exits_placed: int = 0
    exits_without_next_session: int = 0


@dataclass(frozen=True)
class ExitSignals:
    """Per-exit arrays: ticker code, day and direction (short) of each active exit."""

    codes: IntArray
    days: IntArray
    short: BoolArray

    def __len__(self) -> int:
        return len(self.codes)


NO_EXITS = ExitSignals(
    np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool)
)


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
    market: Market,
    codes: IntArray,
    days: IntArray,
    short: BoolArray,
    model: TradeModel,
    exits: ExitSignals = NO_EXITS,
    groups: tuple[IntArray, IntArray] | None = None,
) -> tuple[Candidates, Placement]:
    """Simulate one trade per entry signal (``codes``/``days``/``short`` are per-signal arrays).

    Each trade leaves at the earliest of: the first exit signal on its ticker and
    direction that fills after the trade's entry, the close ``hold_days``
    sessions after its signal's session, a stop, and the ticker's last session.

    ``groups`` (each entry's group, each exit's group) simulates several
    independent signal sets at once: an exit closes only trades of its own
    group. Every other step is per signal, so each group's trades are exactly
    those its signals alone would make.
    """
    entries = _enter(market, codes, days, short, model)
    planned, reason, exit_source, exits_placed, exit_no_next, exit_outside = _plan_exits(
        market, exits, model, entries, groups
    )
    exit_row = planned // 2
    at_open = (planned % 2) == 0
    exit_price = np.where(at_open, market.open[exit_row], market.close[exit_row])
    if (
        model.stop_loss_pct is not None
        or model.take_profit_pct is not None
        or model.trailing_stop_pct is not None
    ):
        # A trade leaving at an open meets no stop on that session: the exit fills first.
        checked_to = exit_row - at_open.astype(np.int64)
        _apply_stops(
            market,
            model,
            entries.sig_row,
            checked_to,
            exit_row,
            entries.entry_price,
            entries.short,
            exit_price,
            reason,
            at_open,
        )
        stopped = np.isin(reason, (EXIT_STOP, EXIT_TARGET, EXIT_TRAILING))
        exit_source[stopped] = -1
    candidates, unpriced_exits = _priced_candidates(
        entries, exit_row, exit_price, reason, at_open, exit_source, model.cost_per_side
    )
    no_price = entries.no_price + unpriced_exits
    outside = int(np.count_nonzero(~entries.inside)) + exit_outside
    return candidates, Placement(outside, entries.no_next, no_price, exits_placed, exit_no_next)


@dataclass(frozen=True)
class _Entries:
    """The signals that enter a trade (``keep`` indexes the signal arrays), and the counts."""

    keep: IntArray
    sig_row: IntArray
    entry_row: IntArray
    last_row: IntArray
    entry_price: FloatArray
    short: BoolArray
    next_open: bool
    inside: BoolArray
    no_next: int
    no_price: int


def _enter(
    market: Market, codes: IntArray, days: IntArray, short: BoolArray, model: TradeModel
) -> _Entries:
    """Each signal's entry session and price; signals that cannot enter are dropped."""
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
    return _Entries(
        keep=keep,
        sig_row=sig_row[keep],
        entry_row=entry_row[keep],
        last_row=last_row[keep],
        entry_price=entry_price[keep],
        short=short[keep],
        next_open=next_open,
        inside=inside,
        no_next=no_next,
        no_price=no_price,
    )


def _plan_exits(
    market: Market,
    exits: ExitSignals,
    model: TradeModel,
    entries: _Entries,
    groups: tuple[IntArray, IntArray] | None = None,
) -> tuple[IntArray, IntArray, IntArray, int, int, int]:
    """Each trade's exit instant before stops: its hold, its ticker's data end or an exit signal.

    Returns (exit instant, exit reason, exit signal or -1, exits placed, exits
    without a next session, exits outside their ticker's data).
    """
    sig_row, last_row = entries.sig_row, entries.last_row
    # Instants as row * 2 + (0 at the open, 1 at the close); rows of one ticker are
    # consecutive, so instants of one ticker compare like times.
    end_at = last_row * 2 + 1
    limit = model.holding_limit
    planned = np.minimum(end_at, (sig_row + limit) * 2 + 1) if limit is not None else end_at
    reason = np.where(planned < end_at, EXIT_HOLD, EXIT_DATA_END).astype(np.int64)
    if limit is not None:
        # A hold that ends on the ticker's last session is a hold, not a data end.
        reason[(sig_row + limit) == last_row] = EXIT_HOLD
    exit_source = np.full(len(entries.keep), -1, dtype=np.int64)
    exit_placed, exit_no_next, exit_outside = 0, 0, 0
    if len(exits):
        entry_at = entries.entry_row * 2 + (0 if entries.next_open else 1)
        grouping = None if groups is None else (groups[0][entries.keep], groups[1])
        found, exit_placed, exit_no_next, exit_outside = _first_exits(
            market, exits, model, entry_at, entries.short, last_row, grouping
        )
        by_signal = found[1] <= planned
        exit_source = np.where(by_signal, found[0], -1)
        planned = np.where(by_signal, found[1], planned)
        reason = np.where(by_signal, EXIT_SIGNAL, reason)
    return planned, reason, exit_source, exit_placed, exit_no_next, exit_outside


def _priced_candidates(
    entries: _Entries,
    exit_row: IntArray,
    exit_price: FloatArray,
    reason: IntArray,
    at_open: BoolArray,
    exit_source: IntArray,
    cost: float,
) -> tuple[Candidates, int]:
    """The trades whose exit has a price, with their returns; and how many had none."""
    keep, sig_row, entry_row = entries.keep, entries.sig_row, entries.entry_row
    entry_price, is_short = entries.entry_price, entries.short
    priced_exit = np.flatnonzero(np.isfinite(exit_price) & (exit_price > 0))
    unpriced = 0
    if len(priced_exit) < len(keep):
        unpriced = len(keep) - len(priced_exit)
        keep, sig_row, entry_row, exit_row = (
            keep[priced_exit],
            sig_row[priced_exit],
            entry_row[priced_exit],
            exit_row[priced_exit],
        )
        entry_price, exit_price = entry_price[priced_exit], exit_price[priced_exit]
        is_short, reason = is_short[priced_exit], reason[priced_exit]
        at_open, exit_source = at_open[priced_exit], exit_source[priced_exit]
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
        exit_at_open=at_open,
        exit_source=exit_source,
    )
    return candidates, unpriced


def _first_exits(
    market: Market,
    exits: ExitSignals,
    model: TradeModel,
    entry_at: IntArray,
    short: BoolArray,
    last_row: IntArray,
    groups: tuple[IntArray, IntArray] | None = None,
) -> tuple[tuple[IntArray, IntArray], int, int, int]:
    """For each trade, the first exit on its ticker and direction that fills after its entry.

    With ``groups`` (each trade's group, each exit's group), only an exit of the
    trade's own group counts.

    Returns ((exit index or -1, exit instant or a huge number), exits placed,
    exits on a last session with no next open, exits outside their ticker's data).
    """
    row, inside, on_last = place_signals(market, exits.codes, exits.days)
    at_next_open = model.exit_on == "next_open"
    usable = inside & ~on_last if at_next_open else inside
    no_next = int(np.count_nonzero(inside & on_last)) if at_next_open else 0
    index = np.flatnonzero(usable)
    fill_at = (row[index] + 1) * 2 if at_next_open else row[index] * 2 + 1
    # Longs and shorts live in two disjoint ranges of one sorted key.
    side = 2 * market.rows + 2
    keys = fill_at + side * exits.short[index].astype(np.int64)
    probe = entry_at + side * short.astype(np.int64)
    if groups is not None:
        # Each group in a disjoint range of its own, after both sides of the one before.
        keys = keys + 2 * side * groups[1][index]
        probe = probe + 2 * side * groups[0]
    order = np.argsort(keys, kind="stable")
    keys, index, fill_at = keys[order], index[order], fill_at[order]
    at = np.searchsorted(keys, probe, side="right")
    found = at < len(keys)
    safe = np.minimum(at, max(len(keys) - 1, 0))
    never = np.int64(np.iinfo(np.int64).max)
    when = np.full(len(entry_at), never, dtype=np.int64)
    which = np.full(len(entry_at), -1, dtype=np.int64)
    if len(keys):
        # The exit found must lie in the trade's own ticker (its rows end at last_row).
        same = (
            found
            & (fill_at[safe] // 2 <= last_row)
            & (keys[safe] - fill_at[safe] == probe - entry_at)
        )
        when = np.where(same, fill_at[safe], never)
        which = np.where(same, index[safe], -1)
    outside = int(np.count_nonzero(~inside))
    return (which, when), len(index), no_next, outside


def _apply_stops(
    market: Market,
    model: TradeModel,
    sig_row: IntArray,
    checked_to: IntArray,
    exit_row: IntArray,
    entry: FloatArray,
    short: BoolArray,
    exit_price: FloatArray,
    reason: IntArray,
    at_open: BoolArray,
) -> None:
    """Move exits forward to the first held session that touches a stop or target (in place).

    Sessions ``sig_row + 1 … checked_to`` are checked in order; ``at_open`` is
    set for a moved exit that fills at the session's open (a gap through the
    stop or target), cleared for one that fills during the session. The trailing
    stop sits ``trailing_stop_pct`` below the highest of the entry price and
    the closes of the sessions held before the one checked (above the lowest,
    for shorts); the tighter of it and the fixed stop applies.
    """
    sign, stop_l, target_l = _stop_levels(model, entry, short)
    trail = model.trailing_stop_pct
    if trail is None:
        _fixed_stops(
            market,
            sig_row,
            checked_to,
            exit_row,
            short,
            exit_price,
            reason,
            at_open,
            stop_l,
            target_l,
        )
        return
    _trailing_stops(
        market,
        trail,
        sig_row,
        checked_to,
        exit_row,
        entry,
        short,
        exit_price,
        reason,
        at_open,
        sign,
        stop_l,
        target_l,
    )


def _stop_levels(
    model: TradeModel, entry: FloatArray, short: BoolArray
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Each trade's direction sign (-1 for shorts) and its fixed stop and target in long space."""
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
    return sign, sign * stop, sign * target


def _trailing_stops(
    market: Market,
    trail: float,
    sig_row: IntArray,
    checked_to: IntArray,
    exit_row: IntArray,
    entry: FloatArray,
    short: BoolArray,
    exit_price: FloatArray,
    reason: IntArray,
    at_open: BoolArray,
    sign: FloatArray,
    stop_l: FloatArray,
    target_l: FloatArray,
) -> None:
    """:func:`_apply_stops` with a trailing stop: the held sessions walked one step at a time."""
    # Best price so far in long space (the highest close for longs, minus the lowest for shorts).
    best_l = sign * entry
    live = np.arange(len(sig_row))
    step = 0
    while len(live):
        step += 1
        live = live[sig_row[live] + step <= checked_to[live]]
        if len(live) == 0:
            break
        row = sig_row[live] + step
        s = sign[live]
        opened = s * market.open[row]
        worst = np.where(short[live], -market.high[row], market.low[row])
        best = np.where(short[live], -market.low[row], market.high[row])
        st, tg = stop_l[live], target_l[live]
        # A long's level is best·(1 − p); a short's is lowest·(1 + p), i.e. −best_l·(1 + p).
        level = np.where(
            short[live],
            best_l[live] * (1.0 + trail / 100.0),
            best_l[live] * (1.0 - trail / 100.0),
        )
        trailing = level > st
        st = np.where(trailing, level, st)
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
        at_open[idx] = (gap_stop | gap_target)[done]
        stopped = (gap_stop | hit_stop)[done]
        reason[idx] = np.where(
            stopped, np.where(trailing[done], EXIT_TRAILING, EXIT_STOP), EXIT_TARGET
        )
        # fmax: a session without a close leaves the best price as it was.
        best_l[live] = np.fmax(best_l[live], s * market.close[row])
        live = live[~done]


FLAT_STOP_CELLS = 1 << 20
"""Most (trade, session) cells :func:`_fixed_stops` checks in one batch (bounds its memory)."""


def _fixed_stops(
    market: Market,
    sig_row: IntArray,
    checked_to: IntArray,
    exit_row: IntArray,
    short: BoolArray,
    exit_price: FloatArray,
    reason: IntArray,
    at_open: BoolArray,
    stop_l: FloatArray,
    target_l: FloatArray,
) -> None:
    """:func:`_apply_stops` without a trailing stop: every held session checked at once.

    A fixed stop and target do not move, so each (trade, session) cell is
    decided on its own: the cells of a batch of trades are laid out flat, the
    same comparisons as the session-by-session walk are made on each, and
    each trade's first hit wins. Batches keep at most ``FLAT_STOP_CELLS`` cells.
    """
    length = np.maximum(checked_to - sig_row, 0)
    ends = np.cumsum(length)
    first = 0
    while first < len(length):
        # The trades of this batch: at least one, and at most FLAT_STOP_CELLS cells.
        before = int(ends[first - 1]) if first else 0
        last = int(np.searchsorted(ends, before + FLAT_STOP_CELLS, side="right"))
        last = max(last, first + 1)
        trades = np.arange(first, last)
        first = last
        count = length[trades]
        if not count.sum():
            continue
        trade = np.repeat(trades, count)
        offset = np.cumsum(count) - count
        step = np.arange(len(trade)) - np.repeat(offset, count) + 1
        row = sig_row[trade] + step
        is_short = short[trade]
        s = np.where(is_short, -1.0, 1.0)
        opened = s * market.open[row]
        worst = np.where(is_short, -market.high[row], market.low[row])
        best = np.where(is_short, -market.low[row], market.high[row])
        st, tg = stop_l[trade], target_l[trade]
        gap_stop = opened <= st
        gap_target = ~gap_stop & (opened >= tg)
        hit_stop = ~gap_stop & ~gap_target & (worst <= st)
        hit_target = ~gap_stop & ~gap_target & ~hit_stop & (best >= tg)
        done = np.flatnonzero(gap_stop | gap_target | hit_stop | hit_target)
        if len(done) == 0:
            continue
        # Cells lie in trade order, then session order: a trade's first hit is its first cell.
        hit = done[np.r_[True, trade[done][1:] != trade[done][:-1]]]
        fill = np.select(
            [(gap_stop | gap_target)[hit], hit_stop[hit], hit_target[hit]],
            [opened[hit], st[hit], tg[hit]],
            default=np.nan,
        )
        idx = trade[hit]
        exit_price[idx] = s[hit] * fill
        exit_row[idx] = row[hit]
        at_open[idx] = (gap_stop | gap_target)[hit]
        reason[idx] = np.where((gap_stop | hit_stop)[hit], EXIT_STOP, EXIT_TARGET)
