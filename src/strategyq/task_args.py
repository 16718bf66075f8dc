"""The one table of task args: every arg the wire accepts, its type, its help.

The CLI builds ``strategyq submit backtest|screening`` options from this
table, and a test checks it against what the parsers and the trade model
read, so adding an arg is one line here (plus its validation where it is
used). Defaults are documented in the help; an arg left out of a task takes
its default where it is validated.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from strategyq.errors import TaskValidationError
from strategyq.protocol import TaskType
from strategyq.trademodel import TradeModel

BACKTEST = (TaskType.BACKTEST,)
SCREENING = (TaskType.SCREENING,)
BOTH = (TaskType.BACKTEST, TaskType.SCREENING)
EVERY = (TaskType.BACKTEST, TaskType.SCREENING, TaskType.SWEEP)


@dataclass(frozen=True)
class TaskArg:
    """One optional or required key of a task's ``args``.

    Attributes:
        name: the key on the wire.
        kind: ``str``, ``int``, ``float``, ``bool`` or ``list`` (a list of strings,
            comma-separated on the command line).
        help: one line for ``--help`` and the docs, with the default.
        task_types: the task types that read it.
        required: the task is invalid without it.
        flag: the CLI option, when it is not ``--`` plus the name with dashes.
        from_cli: turns the option's text into the wire value, when that is not
            just ``kind`` (e.g. ``--hold-days none`` is the wire's ``null``).
    """

    name: str
    kind: type
    help: str
    task_types: tuple[TaskType, ...]
    required: bool = False
    flag: str | None = None
    from_cli: Callable[[str], Any] | None = None

    @property
    def option(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")


def _model_help(name: str) -> str:
    """The trade model's own one-line help for its field ``name``."""
    (found,) = (f for f in fields(TradeModel) if f.name == name)
    return str(found.metadata["help"])


def _hold_days(value: str) -> int | None:
    """``--hold-days``: a whole number, or none/null for no limit (the wire's null)."""
    text = value.strip().lower()
    if text in ("none", "null"):
        return None
    try:
        return int(text)
    except ValueError:
        raise TaskValidationError(
            f"--hold-days {value!r} is not a whole number; use e.g. 5, or 'none' for no limit"
        ) from None


TASK_ARGS: tuple[TaskArg, ...] = (
    # Both task types. strategy_code is the CLI's STRATEGY file argument.
    TaskArg("strategy_code", str, "Python source defining the strategy function.", BOTH, True),
    TaskArg("timeout_seconds", float, "Wall-clock limit of the strategy, seconds (default: the worker's STRATEGYQ_TIME_LIMIT, which also caps it).", BOTH),
    TaskArg("memory_mb", int, "Memory limit of the strategy, MiB (default and cap: STRATEGYQ_MEMORY_MB).", BOTH),
    TaskArg("max_instances", int, "Most instances kept from the strategy (default and cap: STRATEGYQ_MAX_INSTANCES).", BOTH),
    TaskArg("name", str, "A label for the run, e.g. 'sma cross' (the run archive lists a strategy's versions under it).", EVERY),
    TaskArg("tags", list, "Comma-separated labels to search runs by, e.g. trend,v2.", EVERY),
    # Backtests.
    TaskArg("symbols", list, "Comma-separated tickers, e.g. AAPL,MSFT.", BACKTEST, True),
    TaskArg("start_date", str, "First date, ISO 8601 (2010-01-01).", BACKTEST, True, "--start"),
    TaskArg("end_date", str, "Last date, ISO 8601 (2012-12-31).", BACKTEST, True, "--end"),
    TaskArg("adjusted", bool, "Split/dividend-adjusted prices (default: adjusted).", BACKTEST),
    TaskArg("lookback_sessions", int, "Sessions of history before --start the strategy sees (252).", BACKTEST),
    TaskArg("benchmark", str, "Ticker to compare against, e.g. SPY (default: equal weight).", BACKTEST),
    # The trade model (strategyq.trademodel): its fields' own help.
    TaskArg("entry", str, _model_help("entry"), BACKTEST),
    TaskArg("hold_days", str, _model_help("hold_days"), BACKTEST, from_cli=_hold_days),
    TaskArg("exit_on", str, _model_help("exit_on"), BACKTEST),
    TaskArg("stop_loss_pct", float, _model_help("stop_loss_pct"), BACKTEST),
    TaskArg("take_profit_pct", float, _model_help("take_profit_pct"), BACKTEST),
    TaskArg("trailing_stop_pct", float, _model_help("trailing_stop_pct"), BACKTEST),
    TaskArg("commission_bps", float, _model_help("commission_bps"), BACKTEST),
    TaskArg("slippage_bps", float, _model_help("slippage_bps"), BACKTEST),
    TaskArg("initial_capital", float, _model_help("initial_capital"), BACKTEST),
    TaskArg("max_positions", int, _model_help("max_positions"), BACKTEST),
    TaskArg("max_entries_per_ticker", int, _model_help("max_entries_per_ticker"), BACKTEST),
    # Screens.
    TaskArg("universe", list, "Comma-separated tickers to screen.", SCREENING, True),
    TaskArg("limit", int, "Results to return (default 100).", SCREENING),
    TaskArg("as_of", str, "Screen date, ISO 8601 (default: the latest session stored).", SCREENING),
    TaskArg("lookback_sessions", int, "Sessions of history before as_of in the frame (default 260).", SCREENING),
)  # fmt: skip


def args_for(task_type: TaskType) -> tuple[TaskArg, ...]:
    """The args a task type reads, in table order."""
    return tuple(a for a in TASK_ARGS if task_type in a.task_types)
