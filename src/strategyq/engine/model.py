"""The trade model: how a signal becomes a trade (entry, exit, stops, costs, sizing)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal

from strategyq.errors import TaskValidationError

ENTRY_MODES = ("next_open", "close")


@dataclass(frozen=True)
class TradeModel:
    """Every choice of the backtest's trade model, each with its default.

    Attributes:
        entry: ``next_open`` buys at the open of the first session after the
            signal's date; ``close`` buys at the close of the signal's session.
        hold_days: the trade exits at the close of the session this many
            sessions after the signal's session (at least 1).
        stop_loss_pct: optional stop, in percent of the entry price (5.0 = 5 %).
        take_profit_pct: optional target, in percent of the entry price.
        commission_bps: commission per side, in basis points of the notional.
        slippage_bps: slippage per side, in basis points of the price.
        initial_capital: the portfolio's starting equity.
        max_positions: most trades open at once; each takes 1/max_positions of equity.
    """

    entry: Literal["next_open", "close"] = "next_open"
    hold_days: int = 1
    stop_loss_pct: float | None = None
    take_profit_pct: float | None = None
    commission_bps: float = 0.0
    slippage_bps: float = 0.0
    initial_capital: float = 100_000.0
    max_positions: int = 10

    def __post_init__(self) -> None:
        _check_entry(self.entry)
        _check_int("hold_days", self.hold_days, 1, 10_000)
        _check_int("max_positions", self.max_positions, 1, 1_000_000)
        for name in ("stop_loss_pct", "take_profit_pct"):
            value = getattr(self, name)
            if value is not None:
                _check_number(name, value, 0.0, 1e6, "a percentage above 0, e.g. 5.0 for 5 %")
                if value == 0:
                    raise TaskValidationError(
                        f"{name}=0 is not allowed: use a percentage above 0, or leave it out"
                    )
        for name in ("commission_bps", "slippage_bps"):
            _check_number(name, getattr(self, name), 0.0, 5_000.0, "basis points from 0 to 5000")
        _check_number("initial_capital", self.initial_capital, 0.0, 1e15, "a positive amount")
        if self.initial_capital == 0:
            raise TaskValidationError("initial_capital=0 is not allowed: use a positive amount")

    @property
    def cost_per_side(self) -> float:
        """Commission plus slippage per side, as a fraction of the price."""
        return (self.commission_bps + self.slippage_bps) / 10_000.0

    @classmethod
    def from_args(cls, args: Mapping[str, Any]) -> TradeModel:
        """Build the model from a task's optional args of the same names.

        Absent or ``null`` args keep their defaults; other args are ignored.

        Raises:
            TaskValidationError: an arg has the wrong type or is out of range;
                the message names the field, the value and what is allowed.
        """
        given: dict[str, Any] = {}
        for spec in fields(cls):
            if spec.name not in args or args[spec.name] is None:
                continue
            value = args[spec.name]
            if spec.name == "entry":
                given[spec.name] = _check_entry(value)
            elif spec.name in ("hold_days", "max_positions"):
                given[spec.name] = _as_int(spec.name, value)
            else:
                given[spec.name] = _as_float(spec.name, value)
        return cls(**given)

    def to_json(self) -> dict[str, Any]:
        """The model as a plain-JSON dict (echoed in results)."""
        return {spec.name: getattr(self, spec.name) for spec in fields(self)}


def _check_entry(value: Any) -> Literal["next_open", "close"]:
    if value == "next_open":
        return "next_open"
    if value == "close":
        return "close"
    raise TaskValidationError(
        f"entry={value!r} is not allowed; use one of {', '.join(ENTRY_MODES)}"
    )


def _as_int(name: str, value: Any) -> int:
    if isinstance(value, bool):
        raise TaskValidationError(f"{name}={value!r} is not a whole number")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    if isinstance(value, int):
        return value
    raise TaskValidationError(f"{name}={value!r} is not a whole number")


def _as_float(name: str, value: Any) -> float:
    if isinstance(value, bool):
        raise TaskValidationError(f"{name}={value!r} is not a number")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            pass
    raise TaskValidationError(f"{name}={value!r} is not a number")


def _check_int(name: str, value: Any, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TaskValidationError(f"{name}={value!r} is not a whole number; use {low} to {high}")
    if not low <= value <= high:
        raise TaskValidationError(f"{name}={value} is out of range; use {low} to {high}")


def _check_number(name: str, value: Any, low: float, high: float, allowed: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TaskValidationError(f"{name}={value!r} is not a number; use {allowed}")
    if not math.isfinite(value) or not low <= value <= high:
        raise TaskValidationError(f"{name}={value!r} is out of range; use {allowed}")
