"""Instances sent as columns → the engine's signal arrays, without one dict per instance.

A sweep chunk's child sends each call's DataFrame as columns (one list per
field). For the common shape — ``ticker`` and ``date`` strings with optional
boolean ``entry``/``exit`` columns (vectorbt's idiom) and any pass-through
fields — the entry and exit arrays are built column-wise, exactly as
:func:`~strategyq.engine.instances.normalize_instances` followed by the
backtest's signal extraction would build them. Anything else (fields the
engine interprets per instance, untrimmed tickers, unparsable dates, …) is
left to the row path, which validates and reports it.

A single backtest reads its instances the same way (:func:`column_instances`):
besides the signal arrays it keeps what the report needs of the instances —
their count, the unknown tickers, each trade's signal date, the first
``max_instances`` records — and builds instance dicts for that first stretch
only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from strategyq.engine.instances import normalize_instances
from strategyq.engine.jsonvalues import date_to_day, day_to_iso, parse_day
from strategyq.engine.market import IntArray, Market
from strategyq.engine.simulate import BoolArray

ROW_PATH_FIELDS = frozenset({"signal", "score", "direction", "weight", "action"})
"""Fields interpreted per instance: their presence sends the columns down the row path."""


@dataclass(frozen=True)
class ColumnSignals:
    """Active entries and exits on known tickers, in instance order.

    ``entry_index`` and ``exit_index`` are each entry's and exit's position
    among the instances (rows expanded into an exit and/or an entry);
    ``has_exits`` whether any instance is an exit (on any ticker);
    ``before_start`` how many instances on known tickers are dated before the
    first day (counted, not kept).
    """

    entry_codes: IntArray
    entry_days: IntArray
    entry_index: IntArray
    exit_codes: IntArray
    exit_days: IntArray
    has_exits: bool
    exit_index: IntArray
    before_start: int


def column_signals(
    columns: Mapping[str, Sequence[Any]],
    market: Market,
    first_day: int | None,
    day_cache: dict[str, int] | None = None,
) -> ColumnSignals | None:
    """The signals of instances given as equal-length columns, or ``None`` for the row path.

    Signals dated before ``first_day`` are dropped, as are those on tickers
    ``market`` lacks. ``day_cache`` keeps parsed date strings across calls.
    """
    read = _read(columns, market, first_day, day_cache)
    if read is None:
        return None
    return _signals(*read, first_day)


def _signals(
    code: IntArray,
    days: IntArray,
    row: IntArray,
    is_exit: BoolArray,
    keep: BoolArray,
    first_day: int | None,
) -> ColumnSignals:
    enters = np.flatnonzero(keep & ~is_exit)
    leaves = np.flatnonzero(keep & is_exit)
    exits = row[leaves]
    early = 0
    if first_day is not None:
        early = int(np.count_nonzero((code[row] >= 0) & (days[row] < first_day)))
    return ColumnSignals(
        entry_codes=code[row[enters]],
        entry_days=days[row[enters]],
        entry_index=enters.astype(np.int64),
        exit_codes=code[exits],
        exit_days=days[exits],
        has_exits=bool(is_exit.any()),
        exit_index=leaves.astype(np.int64),
        before_start=early,
    )


@dataclass(frozen=True)
class ColumnInstances:
    """A run's instances read from columns: what the backtest's report needs of them.

    The same figures, records and dates as the
    :class:`~strategyq.engine.instances.NormalizedInstances` of the rows the
    columns make, without a dict per instance. ``code`` and ``days`` are per
    row (code -1: a ticker the market lacks); ``row`` and ``is_exit`` per
    instance (a row with ``entry`` and ``exit`` makes an exit, then an entry).
    """

    columns: Mapping[str, Sequence[Any]]
    code: IntArray
    days: IntArray
    row: IntArray
    is_exit: BoolArray

    @property
    def total(self) -> int:
        """How many instances the rows make."""
        return len(self.row)

    @property
    def positive_signals(self) -> int:
        """Every instance: a ``signal`` field takes the row path."""
        return self.total

    @property
    def has_exits(self) -> bool:
        """Whether any instance is an exit."""
        return bool(self.is_exit.any())

    @property
    def unknown_count(self) -> int:
        """How many instances name a ticker the market lacks."""
        return int(np.count_nonzero(self.code[self.row] < 0))

    def unknown_examples(self, count: int) -> list[str]:
        """The first ``count`` of those tickers, sorted."""
        tickers = self.columns["ticker"]
        rows = self.row[self.code[self.row] < 0].tolist()
        return sorted({tickers[i] for i in rows})[:count]

    def head(self, count: int) -> list[dict[str, Any]]:
        """The first ``count`` instance records: the rows that make them, normalised."""
        if count <= 0 or self.total == 0:
            return []
        rows = int(self.row[min(count, self.total) - 1]) + 1
        names = list(self.columns)
        prefix = [self.columns[name][:rows] for name in names]
        dicts = [dict(zip(names, values, strict=True)) for values in zip(*prefix, strict=True)]
        return normalize_instances(dicts).records[:count]

    def scores_at(self, indices: list[int]) -> list[float | None]:
        """No scores: a ``score`` field takes the row path."""
        return [None] * len(indices)

    def days_at(self, indices: list[int]) -> list[str]:
        """The ``YYYY-MM-DD`` date of each of these instances."""
        picked = self.days[self.row[np.asarray(indices, dtype=np.int64)]]
        return [day_to_iso(day) for day in picked.tolist()]


def column_instances(
    columns: Mapping[str, Sequence[Any]], market: Market, first_day: int | None
) -> tuple[ColumnInstances, ColumnSignals] | None:
    """The instances and signals of columns, or ``None`` for the row path.

    The signals are :func:`column_signals`'s.
    """
    read = _read(columns, market, first_day, None)
    if read is None:
        return None
    code, days, row, is_exit, _ = read
    return ColumnInstances(columns, code, days, row, is_exit), _signals(*read, first_day)


def grid_column_signals(
    columns: Mapping[str, Sequence[Any]],
    group: IntArray,
    groups: int,
    market: Market,
    first_day: int | None,
    day_cache: dict[str, int] | None = None,
) -> list[ColumnSignals] | None:
    """:func:`column_signals` of each group's rows, all read in one pass, or ``None``.

    ``group`` gives each row's group (0 … ``groups`` − 1; a whole-grid
    strategy's ``combination``). Group ``g``'s signals are those
    :func:`column_signals` returns for the columns of its rows alone, in their
    order: the same arrays, the same ``entry_index`` (positions among the
    group's own instances) and ``has_exits``. ``None`` when the columns take
    the row path.
    """
    read = _read(columns, market, first_day, day_cache)
    if read is None or len(group) != len(columns["ticker"]):
        return None
    code, days, row, is_exit, keep = read
    # The instances of each group, in the order they come: a stable sort by group.
    owner = group[row]
    order = np.argsort(owner, kind="stable")
    bounds = np.searchsorted(owner[order], np.arange(groups + 1))
    row, is_exit, keep, owner = row[order], is_exit[order], keep[order], owner[order]
    position = np.arange(len(row)) - bounds[owner]
    entering = keep & ~is_exit
    leaving = keep & is_exit
    entry_rows, entry_at = row[entering], position[entering]
    exit_rows, exit_at = row[leaving], position[leaving]
    entry_bounds = np.searchsorted(owner[entering], np.arange(groups + 1))
    exit_bounds = np.searchsorted(owner[leaving], np.arange(groups + 1))
    entry_codes, entry_days = code[entry_rows], days[entry_rows]
    exit_codes, exit_days = code[exit_rows], days[exit_rows]
    has_exits = (np.bincount(owner[is_exit], minlength=groups) > 0).tolist()
    early = np.zeros(groups, dtype=np.int64)
    if first_day is not None:
        early = np.bincount(owner[(code[row] >= 0) & (days[row] < first_day)], minlength=groups)
    before_start = early.tolist()
    out = []
    for g in range(groups):
        a, b = entry_bounds[g], entry_bounds[g + 1]
        c, d = exit_bounds[g], exit_bounds[g + 1]
        out.append(
            ColumnSignals(
                entry_codes=entry_codes[a:b],
                entry_days=entry_days[a:b],
                entry_index=entry_at[a:b],
                exit_codes=exit_codes[c:d],
                exit_days=exit_days[c:d],
                has_exits=has_exits[g],
                exit_index=exit_at[c:d],
                before_start=before_start[g],
            )
        )
    return out


def _read(
    columns: Mapping[str, Sequence[Any]],
    market: Market,
    first_day: int | None,
    day_cache: dict[str, int] | None,
) -> tuple[IntArray, IntArray, IntArray, BoolArray, BoolArray] | None:
    """Each row's ticker code and day, and the instances the rows make: their row, whether
    each is an exit, whether each is kept (a known ticker, on or after ``first_day``)."""
    if "ticker" not in columns or "date" not in columns or ROW_PATH_FIELDS & columns.keys():
        return None
    tickers, dates = columns["ticker"], columns["date"]
    if len({len(values) for values in columns.values()}) > 1:
        return None
    entry, leave = columns.get("entry"), columns.get("exit")
    for flags in (entry, leave):
        if flags is not None and not set(map(type, flags)) <= {bool}:
            return None
    if not set(map(type, tickers)) <= {str} or not set(map(type, dates)) <= {str}:
        return None
    maps = _codes_and_days(tickers, dates, market, {} if day_cache is None else day_cache)
    if maps is None:
        return None
    code_of, day_of = maps
    n = len(tickers)
    code = np.fromiter((code_of[t] for t in tickers), dtype=np.int64, count=n)
    days = np.fromiter((day_of[d] for d in dates), dtype=np.int64, count=n)
    if entry is None and leave is None:
        # Plain rows: each one an entry instance.
        row = np.arange(n, dtype=np.int64)
        is_exit = np.zeros(n, dtype=bool)
    else:
        # A row with both flags is an exit followed by an entry; one with neither is dropped.
        kinds = np.zeros((n, 2), dtype=bool)
        if leave is not None:
            kinds[:, 0] = np.asarray(leave, dtype=bool)
        if entry is not None:
            kinds[:, 1] = np.asarray(entry, dtype=bool)
        flat = np.flatnonzero(kinds.ravel())
        row, is_exit = flat // 2, flat % 2 == 0
    keep = code[row] >= 0
    if first_day is not None:
        keep &= days[row] >= first_day
    return code, days, row, is_exit, keep


def _codes_and_days(
    tickers: Sequence[str], dates: Sequence[str], market: Market, day_of: dict[str, int]
) -> tuple[dict[str, int], dict[str, int]] | None:
    """Each distinct ticker's code (-1 if ``market`` lacks it) and each distinct date's day.

    ``None`` when a ticker has surrounding blanks or a date does not parse: the
    row path reports those.
    """
    known = market.code_of()
    code_of: dict[str, int] = {}
    for ticker in set(tickers):
        if not ticker or ticker != ticker.strip():
            return None
        code_of[ticker] = known.get(ticker, -1)
    fresh = list(set(dates) - day_of.keys())
    if fresh and all(_plain_iso(text) for text in fresh):
        try:
            # Plain dates or midnights, the forms a returned frame's dates travel in: one
            # NumPy parse for all of them (the same days date.fromisoformat gives).
            days = [text[:10] for text in fresh]
            parsed = np.array(days, dtype="datetime64[D]").astype(np.int64).tolist()
        except ValueError:
            pass  # an impossible date such as 2024-02-30: parsed one by one below
        else:
            day_of.update(zip(fresh, parsed, strict=True))
            fresh = []
    for text in fresh:
        try:
            day = parse_day(text)
        except ValueError:
            return None
        assert day is not None  # a string always names a day or fails
        day_of[text] = date_to_day(day)
    return code_of, day_of


def _plain_iso(text: str) -> bool:
    """Whether ``text`` is ``YYYY-MM-DD`` with digits, alone or at ``T00:00:00`` (no blanks).

    Year 0 is left to the one-by-one parse, which refuses it as Python's dates do.
    """
    return (
        (len(text) == 10 or (len(text) == 19 and text[10:] == "T00:00:00"))
        and text[:4] != "0000"
        and text[4] == "-"
        and text[7] == "-"
        and text[:4].isdigit()
        and text[5:7].isdigit()
        and text[8:10].isdigit()
        and text.isascii()
    )
