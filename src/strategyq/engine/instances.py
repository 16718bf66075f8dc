"""Strategy output → normalised instance records.

An instance is a dict with a required ``ticker``; ``date``, ``signal``,
``action`` (``entry``, the default, or ``exit``), ``score``, ``weight``,
``message`` and ``direction`` are understood and every other JSON-able field
passes through. Rows with boolean ``entry``/``exit`` fields (vectorbt's
idiom) become one entry and/or one exit instance each. A malformed instance raises
:class:`~strategyq.errors.EngineError` naming its index and field; an instance
whose ticker has no market data is kept and counted, never fatal.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd

from strategyq.engine.jsonvalues import NotJsonable, parse_day, to_json
from strategyq.errors import EngineError

FALSE_WORDS = frozenset({"", "false", "0", "no", "none", "null", "off"})
"""Signal strings that mean "no signal" (compared case-insensitively)."""

EXIT_WORDS = frozenset({"exit", "sell", "close", "cover"})
"""Signal strings that look like an exit; refused, so that they never open a position."""

ACTIONS = ("entry", "exit")


class InstanceFacts(Protocol):
    """What a backtest's report reads of its instances, however they were read."""

    @property
    def total(self) -> int:
        """How many instances the strategy returned."""
        ...

    @property
    def positive_signals(self) -> int:
        """How many instances carry a truthy signal."""
        ...

    @property
    def has_exits(self) -> bool:
        """Whether any instance is an active exit."""
        ...

    @property
    def unknown_count(self) -> int:
        """How many instances name a ticker without market data."""
        ...

    def unknown_examples(self, count: int) -> list[str]:
        """The first ``count`` of those tickers, sorted."""
        ...

    def head(self, count: int) -> list[dict[str, Any]]:
        """The first ``count`` instance records."""
        ...

    def scores_at(self, indices: list[int]) -> list[float | None]:
        """The score of each of these instances."""
        ...

    def days_at(self, indices: list[int]) -> list[str]:
        """The ``YYYY-MM-DD`` date of each of these instances (``""`` when undated)."""
        ...


@dataclass(frozen=True)
class NormalizedInstances:
    """Instances as plain-JSON records plus the columns the engine needs.

    Attributes:
        records: one plain-JSON dict per instance, in the strategy's order;
            ``date`` is ``YYYY-MM-DD`` (or absent) and ``signal`` is present.
        tickers: each record's ticker.
        days: each record's date as a ``datetime.date`` (``None`` when undated).
        active: whether each record's signal is truthy.
        short: whether each record's direction is ``short``.
        scores: each record's numeric score, or ``None``.
        unknown_tickers: indices of records whose ticker is not in ``known_tickers``.
        exits: whether each record is an exit (``action: "exit"``).
        weights: each record's ``weight`` (fraction of equity, capped at 1), or ``None``.
    """

    records: list[dict[str, Any]]
    tickers: list[str]
    days: list[dt.date | None]
    active: list[bool]
    short: list[bool]
    scores: list[float | None]
    unknown_tickers: list[int] = field(default_factory=list)
    exits: list[bool] = field(default_factory=list)
    weights: list[float | None] = field(default_factory=list)

    @property
    def total(self) -> int:
        """How many instances the strategy returned."""
        return len(self.records)

    @property
    def positive_signals(self) -> int:
        """How many instances carry a truthy signal."""
        return sum(self.active)

    @property
    def has_exits(self) -> bool:
        """Whether any instance is an active exit."""
        return any(e and a for e, a in zip(self.exits, self.active, strict=True))

    @property
    def unknown_count(self) -> int:
        """How many instances name a ticker outside ``known_tickers``."""
        return len(self.unknown_tickers)

    def unknown_examples(self, count: int) -> list[str]:
        """The first ``count`` of those tickers, sorted."""
        return sorted({self.tickers[i] for i in self.unknown_tickers})[:count]

    def head(self, count: int) -> list[dict[str, Any]]:
        """The first ``count`` records."""
        return self.records[:count]

    def scores_at(self, indices: list[int]) -> list[float | None]:
        """The score of each of these instances."""
        return [self.scores[i] for i in indices]

    def days_at(self, indices: list[int]) -> list[str]:
        """The ``YYYY-MM-DD`` date of each of these instances (``""`` when undated)."""
        out: list[str] = []
        for i in indices:
            day = self.days[i]
            out.append(day.isoformat() if day is not None else "")
        return out


def signal_is_true(value: Any) -> bool:
    """Whether a (plain-JSON) signal value means "act on it"."""
    if isinstance(value, str):
        return value.strip().lower() not in FALSE_WORDS
    return bool(value)


def normalize_instances(
    raw: Any,
    *,
    known_tickers: Collection[str] | None = None,
    default_date: dt.date | None = None,
) -> NormalizedInstances:
    """Validate and normalise a strategy's instances.

    Args:
        raw: a list (or tuple) of dicts, or a DataFrame with one row per instance.
        known_tickers: when given, instances naming other tickers are listed in
            ``unknown_tickers`` (kept, not an error).
        default_date: the date given to instances without one (screening uses
            its ``as_of``); without it such instances stay undated.

    Raises:
        EngineError: ``raw`` is not a list of dicts, or an instance lacks a
            ticker or holds a value that is not JSON-able or not understood;
            the message names the instance's index and field.
    """
    rows = _expand_columns(_rows(raw))
    known = None if known_tickers is None else frozenset(known_tickers)
    records: list[dict[str, Any]] = []
    tickers: list[str] = []
    days: list[dt.date | None] = []
    active: list[bool] = []
    short: list[bool] = []
    scores: list[float | None] = []
    unknown: list[int] = []
    exits: list[bool] = []
    weights: list[float | None] = []
    for index, row in enumerate(rows):
        if not isinstance(row, dict):
            raise EngineError(
                f"instance {index} is a {type(row).__name__}, not a dict; "
                "return a list of dicts such as {'ticker': 'AAPL', 'date': '2024-01-15'}"
            )
        record = _record(index, row)
        ticker = record["ticker"]
        day = _day(index, record, default_date)
        tickers.append(ticker)
        days.append(day)
        active.append(signal_is_true(record["signal"]))
        short.append(_is_short(index, record))
        scores.append(_score(index, record))
        exits.append(_is_exit(index, record))
        weights.append(_weight(index, record))
        if known is not None and ticker not in known:
            unknown.append(index)
        records.append(record)
    return NormalizedInstances(
        records, tickers, days, active, short, scores, unknown, exits, weights
    )


def _rows(raw: Any) -> list[Any]:
    if isinstance(raw, pd.DataFrame):
        return list(raw.to_dict(orient="records"))
    if isinstance(raw, (list, tuple)):
        return list(raw)
    raise EngineError(
        f"the strategy returned a {type(raw).__name__}; return a list of dicts "
        "(or a DataFrame with one row per instance), each with at least a 'ticker'"
    )


def _is_column_form(row: Any) -> bool:
    return (
        isinstance(row, dict)
        and "action" not in row
        and (
            isinstance(row.get("entry"), (bool, np.bool_))
            or isinstance(row.get("exit"), (bool, np.bool_))
        )
    )


def _expand_columns(rows: list[Any]) -> list[Any]:
    """Rows with boolean ``entry``/``exit`` fields → entry and exit instances.

    A row with ``exit`` true becomes an exit, one with ``entry`` true an entry,
    one with both an exit followed by an entry (the exit closes the position
    held before, the entry opens the next); a row with neither is dropped.
    """
    if not any(_is_column_form(row) for row in rows):
        return rows
    out: list[Any] = []
    for row in rows:
        if not _is_column_form(row):
            out.append(row)
            continue
        rest = {k: v for k, v in row.items() if k not in ("entry", "exit")}
        if row.get("exit") is True or row.get("exit") is np.True_:
            out.append({**rest, "action": "exit"})
        if row.get("entry") is True or row.get("entry") is np.True_:
            out.append({**rest, "action": "entry"})
    return out


def _record(index: int, row: dict[Any, Any]) -> dict[str, Any]:
    record: dict[str, Any] = {}
    for key, value in row.items():
        if not isinstance(key, str):
            raise EngineError(
                f"instance {index} has a field named {key!r} ({type(key).__name__}); "
                "field names must be strings"
            )
        kind = type(value)
        # Plain JSON scalars (all of what a sandbox child's answer decodes to, bar
        # containers) are what to_json would return unchanged.
        if kind is str or kind is int or kind is bool or value is None:
            record[key] = value
            continue
        if kind is float and math.isfinite(value):
            record[key] = value
            continue
        try:
            record[key] = to_json(value, key)
        except NotJsonable as exc:
            raise EngineError(
                f"instance {index} field {exc.path!r} {exc.reason}; "
                "use numbers, strings, booleans, lists or dicts"
            ) from None
    ticker = record.get("ticker")
    if not isinstance(ticker, str) or not ticker.strip():
        what = "has no 'ticker'" if ticker is None else f"has ticker={ticker!r}"
        raise EngineError(f"instance {index} {what}; every instance needs a ticker string")
    record["ticker"] = ticker.strip()
    if "signal" not in row:
        record["signal"] = True
    signal = record["signal"]
    if isinstance(signal, str):
        word = signal.strip().lower()
        if word in EXIT_WORDS:
            raise EngineError(
                f"instance {index} has signal={signal!r}; a signal is true or false. "
                "To close a position use 'action': 'exit', e.g. "
                "{'ticker': 'AAPL', 'date': '2024-01-15', 'action': 'exit'}"
            )
        if word == "short":
            raise EngineError(
                f"instance {index} has signal={signal!r}; a signal is true or false. "
                "To sell short, set 'direction': 'short'"
            )
    return record


def _day(index: int, record: dict[str, Any], default_date: dt.date | None) -> dt.date | None:
    raw = record.get("date")
    try:
        day = parse_day(raw)
    except ValueError as exc:
        raise EngineError(f"instance {index} field 'date': {exc}") from None
    if day is None:
        day = default_date
    if day is None:
        record.pop("date", None)
    else:
        record["date"] = day.isoformat()
    return day


def _is_short(index: int, record: dict[str, Any]) -> bool:
    direction = record.get("direction")
    if direction is None:
        return False
    if isinstance(direction, str):
        lowered = direction.strip().lower()
        if lowered in ("long", "short"):
            record["direction"] = lowered
            return lowered == "short"
    raise EngineError(f"instance {index} field 'direction' is {direction!r}; use 'long' or 'short'")


def _is_exit(index: int, record: dict[str, Any]) -> bool:
    action = record.get("action")
    if action is None:
        return False
    if isinstance(action, str) and action.strip().lower() in ACTIONS:
        word = action.strip().lower()
        record["action"] = word
        return word == "exit"
    raise EngineError(
        f"instance {index} field 'action' is {action!r}; use 'entry' (the default) or 'exit'"
    )


def _weight(index: int, record: dict[str, Any]) -> float | None:
    weight = record.get("weight")
    if weight is None:
        return None
    if (
        isinstance(weight, bool)
        or not isinstance(weight, (int, float))
        or not math.isfinite(weight)
        or weight <= 0
    ):
        raise EngineError(
            f"instance {index} field 'weight' is {weight!r}; use a fraction of equity above 0 "
            "(e.g. 0.1 for 10 %; above 1 counts as 1), or leave it out"
        )
    return float(weight)


def _score(index: int, record: dict[str, Any]) -> float | None:
    score = record.get("score")
    if score is None:
        return None
    if isinstance(score, bool) or not isinstance(score, (int, float)):
        raise EngineError(f"instance {index} field 'score' is {score!r}; use a number or null")
    number = float(score)
    return number if math.isfinite(number) else None


def numeric_or_none(value: Any) -> float | None:
    """A finite number from a plain-JSON value, else ``None`` (for ranking keys)."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float, np.number)):
        number = float(value)
        return number if math.isfinite(number) else None
    return None
