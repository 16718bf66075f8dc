"""The trade model: how a signal becomes a trade (entry, exit, stops, costs, sizing).

A leaf module (no numpy, no pandas): the producer API and the worker validate a
task's trade-model args with it when they parse the task, and the engine runs
on the same object. Each field is a task arg of the same name; its
``metadata["help"]`` is the one-line description the CLI shows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from strategyq.errors import TaskValidationError

ENTRY_MODES = ("next_open", "close")
EXIT_MODES = ("next_open", "close")
HOLD_AUTO: Literal["auto"] = "auto"
"""``hold_days`` when the task leaves it out: 1 session, or no limit when the strategy exits."""
MAX_HOLD_DAYS = 10_000


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass(frozen=True)
class TradeModel:
    """Every choice of the backtest's trade model, each with its default.

    Attributes:
        entry: ``next_open`` buys at the open of the first session after the
            signal's date; ``close`` buys at the close of the signal's session.
        hold_days: the most sessions a trade is held: it exits at the close of
            the session this many sessions after the signal's session. ``None``
            holds until an exit signal, a stop or the data's end. ``"auto"``
            (the default) is 1 when the strategy emits no exit instance and
            ``None`` when it does.
        stop_loss_pct: optional stop, in percent of the entry price (5.0 = 5 %).
        take_profit_pct: optional target, in percent of the entry price.
        commission_bps: commission per side, in basis points of the notional.
        slippage_bps: slippage per side, in basis points of the price.
        initial_capital: the portfolio's starting equity.
        max_positions: most trades open at once; each takes 1/max_positions of equity.
        exit_on: where an exit instance fills: ``next_open`` (the open of the
            session after the exit's session) or ``close`` (that session's close).
        trailing_stop_pct: optional stop trailing the highest close since entry
            (lowest for shorts), in percent.
        max_entries_per_ticker: most positions open at once on one ticker; an
            entry beyond it is ignored and counted. 0 means no limit.
    """

    entry: Literal["next_open", "close"] = field(
        default="next_open", metadata=_help("next_open (default) or close.")
    )
    hold_days: int | Literal["auto"] | None = field(
        default=HOLD_AUTO,
        metadata=_help("Most sessions a trade is held; 'none' = until an exit or stop."),
    )
    stop_loss_pct: float | None = field(default=None, metadata=_help("Stop loss, percent."))
    take_profit_pct: float | None = field(default=None, metadata=_help("Take profit, percent."))
    commission_bps: float = field(default=0.0, metadata=_help("Commission per side, bps."))
    slippage_bps: float = field(default=0.0, metadata=_help("Slippage per side, bps."))
    initial_capital: float = field(default=100_000.0, metadata=_help("Starting equity."))
    max_positions: int = field(default=10, metadata=_help("Most trades open at once."))
    exit_on: Literal["next_open", "close"] = field(
        default="next_open", metadata=_help("Where exit instances fill: next_open or close.")
    )
    trailing_stop_pct: float | None = field(
        default=None, metadata=_help("Trailing stop from the best close since entry, percent.")
    )
    max_entries_per_ticker: int = field(
        default=1, metadata=_help("Most positions open at once on one ticker (0 = no limit).")
    )

    def __post_init__(self) -> None:
        _check_mode("entry", self.entry, ENTRY_MODES)
        _check_mode("exit_on", self.exit_on, EXIT_MODES)
        if self.hold_days is not None and self.hold_days != HOLD_AUTO:
            _check_int("hold_days", self.hold_days, 1, MAX_HOLD_DAYS, "or null for no limit")
        _check_int("max_positions", self.max_positions, 1, 1_000_000)
        _check_int(
            "max_entries_per_ticker", self.max_entries_per_ticker, 0, 1_000_000, "(0 = no limit)"
        )
        for name in ("stop_loss_pct", "take_profit_pct", "trailing_stop_pct"):
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

    @property
    def holding_limit(self) -> int | None:
        """The most sessions a trade is held (``None``: no limit); ``"auto"`` counts as 1."""
        if self.hold_days == HOLD_AUTO:
            return 1
        assert not isinstance(self.hold_days, str)
        return self.hold_days

    def resolved(self, has_exits: bool) -> TradeModel:
        """The model with ``hold_days="auto"`` made concrete for a strategy that exits or not."""
        if self.hold_days != HOLD_AUTO:
            return self
        return replace(self, hold_days=None if has_exits else 1)

    @classmethod
    def from_args(cls, args: Mapping[str, Any]) -> TradeModel:
        """Build the model from a task's optional args of the same names.

        Absent args keep their defaults, as does ``null`` except for
        ``hold_days`` (where ``null`` means no limit); other args are ignored.

        Raises:
            TaskValidationError: an arg has the wrong type or is out of range;
                the message names the field, the value and what is allowed.
        """
        given: dict[str, Any] = {}
        for spec in fields(cls):
            if spec.name not in args:
                continue
            value = args[spec.name]
            if value is None:
                if spec.name == "hold_days":
                    given[spec.name] = None
                continue
            if spec.name in ("entry", "exit_on"):
                modes = ENTRY_MODES if spec.name == "entry" else EXIT_MODES
                given[spec.name] = _check_mode(spec.name, value, modes)
            elif spec.name == "hold_days" and isinstance(value, str) and _is_none_word(value):
                given[spec.name] = None
            elif spec.name in ("hold_days", "max_positions", "max_entries_per_ticker"):
                given[spec.name] = _as_int(spec.name, value)
            else:
                given[spec.name] = _as_float(spec.name, value)
        return cls(**given)

    def to_json(self) -> dict[str, Any]:
        """The model as a plain-JSON dict (echoed in results)."""
        return {spec.name: getattr(self, spec.name) for spec in fields(self)}


TRADE_ARG_NAMES = tuple(spec.name for spec in fields(TradeModel))
"""The task args the trade model reads."""


def _is_none_word(value: str) -> bool:
    return value.strip().lower() in ("none", "null")


def _check_mode(name: str, value: Any, allowed: tuple[str, ...]) -> Literal["next_open", "close"]:
    if value == "next_open":
        return "next_open"
    if value == "close":
        return "close"
    raise TaskValidationError(f"{name}={value!r} is not allowed; use one of {', '.join(allowed)}")


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


def _check_int(name: str, value: Any, low: int, high: int, note: str = "") -> None:
    allowed = f"use {low} to {high}" + (f" {note}" if note else "")
    if isinstance(value, bool) or not isinstance(value, int):
        raise TaskValidationError(f"{name}={value!r} is not a whole number; {allowed}")
    if not low <= value <= high:
        raise TaskValidationError(f"{name}={value} is out of range; {allowed}")


def _check_number(name: str, value: Any, low: float, high: float, allowed: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TaskValidationError(f"{name}={value!r} is not a number; use {allowed}")
    if not math.isfinite(value) or not low <= value <= high:
        raise TaskValidationError(f"{name}={value!r} is out of range; use {allowed}")
