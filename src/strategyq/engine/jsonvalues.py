"""Turning strategy output and engine numbers into plain JSON values.

Strategies hand back numpy scalars, pandas timestamps, ``NaN`` and friends; the
result written to Redis must be plain JSON that any consumer (Go's
``encoding/json`` included) can read. Everything here is pure and allocation-light
because it runs once per instance field.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd

MAX_DEPTH = 32
"""Deepest nesting accepted inside one instance field."""


class NotJsonable(ValueError):
    """Raised by :func:`to_json` with the path (inside the value) that failed."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(reason)
        self.path = path
        self.reason = reason


def finite_or_none(value: float) -> float | None:
    """``value`` as a Python float, or ``None`` when it is NaN or infinite."""
    number = float(value)
    return number if math.isfinite(number) else None


def to_json(value: Any, path: str = "", depth: int = 0) -> Any:
    """Convert ``value`` into plain JSON (dict/list/str/int/float/bool/None).

    NaN, infinities, ``pd.NA`` and ``NaT`` become ``None``; numpy scalars become
    Python numbers; dates and timestamps become ISO strings; tuples, sets of
    numbers and numpy arrays become lists.

    The cost is linear in the size of ``value``: the path of a nested item is
    only spelled out when that item fails (a long key above a long list must
    not be copied once per list item).

    Raises:
        NotJsonable: the value (or something nested in it) has no JSON form.
    """
    return _convert(value, (path,) if path else None, depth)


_Trail = tuple[Any, ...] | None
"""A nested item's place: ``(parent_trail, key_or_index)``, or ``(path,)`` at the top."""


def _spell(trail: _Trail) -> str:
    parts: list[Any] = []
    while trail is not None:
        if len(trail) == 1:
            parts.append(trail[0])
            break
        trail, step = trail
        parts.append(step)
    path = ""
    for step in reversed(parts):
        if isinstance(step, int):
            path += f"[{step}]"
        else:
            path = f"{path}.{step}" if path else str(step)
    return path


def _convert(value: Any, trail: _Trail, depth: int) -> Any:
    kind = type(value)
    if value is None or kind is bool or kind is str or kind is int:
        return value
    if kind is float:
        return value if math.isfinite(value) else None
    if isinstance(value, np.generic):
        return _numpy_scalar(value, _spell(trail))
    if depth >= MAX_DEPTH:
        raise NotJsonable(_spell(trail), f"nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise NotJsonable(
                    f"{_spell(trail)}[{key!r}]",
                    f"has a key of type {type(key).__name__}; keys must be str",
                )
            out[key] = _convert(item, (trail, key), depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        return [_convert(item, (trail, i), depth + 1) for i, item in enumerate(value)]
    if isinstance(value, np.ndarray):
        return [_convert(item, (trail, i), depth + 1) for i, item in enumerate(value.tolist())]
    if value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, (pd.Timestamp, dt.datetime)):
        return value.isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return finite_or_none(float(value))
    raise NotJsonable(_spell(trail), f"is a {type(value).__name__}, which has no JSON form")


def _numpy_scalar(value: np.generic, path: str) -> Any:
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return finite_or_none(float(value))
    if isinstance(value, np.str_):
        return str(value)
    if isinstance(value, np.datetime64):
        if np.isnat(value):
            return None
        return pd.Timestamp(value).isoformat()
    raise NotJsonable(path, f"is a numpy {type(value).__name__}, which has no JSON form")


def parse_day(value: Any) -> dt.date | None:
    """The calendar date a date-like value names, or ``None`` for a missing date.

    Accepts ``datetime.date``/``datetime``, ``pd.Timestamp``, ``np.datetime64``
    and ISO strings (``2024-01-15``, ``2024-01-15 00:00:00``,
    ``2024-01-15T00:00:00Z``, ``…+02:00``). A timestamp with an offset names
    the date as written in its own offset: a session date is local to its
    market, so converting it to UTC could move it to another day.

    Raises:
        ValueError: the value is not date-like.
    """
    if value is None or value is pd.NaT:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, np.datetime64):
        return None if np.isnat(value) else pd.Timestamp(value).date()
    if isinstance(value, str):
        return _parse_day_string(value)
    raise ValueError(f"{type(value).__name__} {value!r} is not a date")


def _parse_day_string(text: str) -> dt.date:
    stripped = text.strip()
    if len(stripped) == 10:
        try:
            return dt.date.fromisoformat(stripped)
        except ValueError:
            pass
    try:
        return dt.datetime.fromisoformat(stripped).date()
    except ValueError:
        raise ValueError(
            f"{text!r} is not a date; use ISO form such as '2024-01-15' or '2024-01-15T00:00:00Z'"
        ) from None


def parse_timestamp(value: Any, field: str) -> dt.datetime:
    """A naive UTC datetime from a date-like value (offsets are converted to UTC).

    Raises:
        ValueError: the value is not date-like; the message names ``field``.
    """
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    elif isinstance(value, np.datetime64):
        value = pd.Timestamp(value).to_pydatetime()
    elif isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(
                f"{field}={value!r} is not a date; use ISO form such as '2024-01-01T00:00:00Z'"
            ) from None
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        moment: dt.datetime = value
        return moment
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day)
    raise ValueError(f"{field}={value!r} is not a date")


def iso_seconds(value: dt.datetime) -> str:
    """``YYYY-MM-DDTHH:MM:SS`` (no fraction, no offset)."""
    return value.replace(microsecond=0).isoformat(timespec="seconds")


def day_to_iso(day: int) -> str:
    """Days since 1970-01-01 as ``YYYY-MM-DD``."""
    return (EPOCH + dt.timedelta(days=int(day))).isoformat()


def date_to_day(value: dt.date) -> int:
    """A date as days since 1970-01-01."""
    return (value - EPOCH).days


EPOCH = dt.date(1970, 1, 1)
