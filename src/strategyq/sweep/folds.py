"""Walk-forward folds: consecutive training and test windows of trading sessions.

Fold ``k`` trains on ``train_sessions`` sessions and tests on the
``test_sessions`` sessions right after them; the next fold starts
``test_sessions`` later, so the test windows tile the range without gaps or
overlap and their stitched equity curve is one out-of-sample history. With
``anchored`` every training window starts at the first session (an expanding
window) instead of rolling. Only whole folds are made: sessions after the last
full test window are left out (and reported).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from strategyq.errors import TaskValidationError

MAX_FOLDS = 200


@dataclass(frozen=True)
class WalkForward:
    """The ``walk_forward`` argument of a sweep."""

    train_sessions: int
    test_sessions: int
    anchored: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "train_sessions": self.train_sessions,
            "test_sessions": self.test_sessions,
            "anchored": self.anchored,
        }


@dataclass(frozen=True)
class Fold:
    """One fold, as session indices (half-open) and dates (inclusive)."""

    index: int
    train: tuple[int, int]
    test: tuple[int, int]
    train_start: dt.date
    train_end: dt.date
    test_start: dt.date
    test_end: dt.date

    def to_json(self) -> dict[str, Any]:
        return {
            "fold": self.index,
            "train_start": self.train_start.isoformat(),
            "train_end": self.train_end.isoformat(),
            "test_start": self.test_start.isoformat(),
            "test_end": self.test_end.isoformat(),
            "train_sessions": self.train[1] - self.train[0],
            "test_sessions": self.test[1] - self.test[0],
        }


def parse_walk_forward(value: Any) -> WalkForward:
    """Validate the task's ``walk_forward`` object."""
    if not isinstance(value, Mapping):
        raise TaskValidationError(
            'args.walk_forward must be an object such as {"train_sessions": 504, '
            f'"test_sessions": 126}}, got {value!r}'
        )
    out: dict[str, int] = {}
    for name in ("train_sessions", "test_sessions"):
        n = value.get(name)
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 100_000:
            raise TaskValidationError(
                f"args.walk_forward.{name} must be a whole number of sessions from 1 to 100000, "
                f"got {n!r}"
            )
        out[name] = n
    anchored = value.get("anchored", False)
    if not isinstance(anchored, bool):
        raise TaskValidationError(
            f"args.walk_forward.anchored must be true or false, got {anchored!r}"
        )
    return WalkForward(out["train_sessions"], out["test_sessions"], anchored)


def split(sessions: Sequence[dt.date], spec: WalkForward) -> list[Fold]:
    """The folds over ``sessions`` (sorted, distinct trading dates).

    Raises:
        TaskValidationError: the range is too short for one fold.
    """
    n = len(sessions)
    train, test = spec.train_sessions, spec.test_sessions
    if n < train + test:
        raise TaskValidationError(
            f"args.walk_forward needs at least train_sessions + test_sessions = {train + test} "
            f"sessions, and the range holds {n}; widen the dates or shorten the windows"
        )
    folds: list[Fold] = []
    k = 0
    while True:
        test_start = train + k * test
        test_end = test_start + test
        if test_end > n:
            break
        train_start = 0 if spec.anchored else test_start - train
        folds.append(
            Fold(
                index=k,
                train=(train_start, test_start),
                test=(test_start, test_end),
                train_start=sessions[train_start],
                train_end=sessions[test_start - 1],
                test_start=sessions[test_start],
                test_end=sessions[test_end - 1],
            )
        )
        k += 1
        if k > MAX_FOLDS:
            raise TaskValidationError(
                f"args.walk_forward makes more than {MAX_FOLDS} folds; use longer test windows"
            )
    return folds
