"""The one table of task args: every arg the wire accepts, its type, its help.

The CLI builds ``strategyq submit backtest|screening`` options from this
table, and a test checks it against what the parsers and the trade model
read, so adding an arg is one line here (plus its validation where it is
used). Defaults are documented in the help; an arg left out of a task takes
its default where it is validated.
"""

from __future__ import annotations

from dataclasses import dataclass

from strategyq.protocol import TaskType

BACKTEST = (TaskType.BACKTEST,)
SCREENING = (TaskType.SCREENING,)
BOTH = (TaskType.BACKTEST, TaskType.SCREENING)


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
    """

    name: str
    kind: type
    help: str
    task_types: tuple[TaskType, ...]
    required: bool = False
    flag: str | None = None

    @property
    def option(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")


TASK_ARGS: tuple[TaskArg, ...] = (
    # Both task types. strategy_code is the CLI's STRATEGY file argument.
    TaskArg("strategy_code", str, "Python source defining the strategy function.", BOTH, True),
    TaskArg("timeout_seconds", float, "Wall-clock limit of the strategy, seconds (default: the worker's STRATEGYQ_TIME_LIMIT, which also caps it).", BOTH),
    TaskArg("memory_mb", int, "Memory limit of the strategy, MiB (default and cap: STRATEGYQ_MEMORY_MB).", BOTH),
    TaskArg("max_instances", int, "Most instances kept from the strategy (default and cap: STRATEGYQ_MAX_INSTANCES).", BOTH),
    # Backtests.
    TaskArg("symbols", list, "Comma-separated tickers, e.g. AAPL,MSFT.", BACKTEST, True),
    TaskArg("start_date", str, "First date, ISO 8601 (2010-01-01).", BACKTEST, True, "--start"),
    TaskArg("end_date", str, "Last date, ISO 8601 (2012-12-31).", BACKTEST, True, "--end"),
    TaskArg("adjusted", bool, "Split/dividend-adjusted prices (default: adjusted).", BACKTEST),
    TaskArg("entry", str, "Entry price: next_open (default) or close.", BACKTEST),
    TaskArg("exit_on", str, "Where exit instances fill: next_open (default) or close.", BACKTEST),
    TaskArg("hold_days", str, "Most sessions a trade is held; 'none' = until an exit or a stop.", BACKTEST),
    TaskArg("stop_loss_pct", float, "Stop loss, percent of the entry price (default: none).", BACKTEST),
    TaskArg("take_profit_pct", float, "Take profit, percent of the entry price (default: none).", BACKTEST),
    TaskArg("trailing_stop_pct", float, "Trailing stop from the best close since entry, percent (default: none).", BACKTEST),
    TaskArg("commission_bps", float, "Commission per side, basis points (default 0).", BACKTEST),
    TaskArg("slippage_bps", float, "Slippage per side, basis points (default 0).", BACKTEST),
    TaskArg("initial_capital", float, "Starting equity (default 100000).", BACKTEST),
    TaskArg("max_positions", int, "Most trades open at once; each takes 1/max_positions of equity (default 10).", BACKTEST),
    TaskArg("max_entries_per_ticker", int, "Most positions open at once on one ticker (0 = no limit).", BACKTEST),
    TaskArg("benchmark", str, "Ticker to compare against, e.g. SPY (default: equal weight).", BACKTEST),
    # Screens.
    TaskArg("universe", list, "Comma-separated tickers to screen.", SCREENING, True),
    TaskArg("limit", int, "Results to return (default 100).", SCREENING),
    TaskArg("as_of", str, "Screen date, ISO 8601 (default: the latest session stored).", SCREENING),
    TaskArg("lookback_sessions", int, "Sessions of history the strategy sees before start_date (backtests, default 252) or as_of (screens, default 260).", BOTH),
)  # fmt: skip


def args_for(task_type: TaskType) -> tuple[TaskArg, ...]:
    """The args a task type reads, in table order."""
    return tuple(a for a in TASK_ARGS if task_type in a.task_types)
