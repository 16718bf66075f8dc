"""The one table of task args: every arg the wire accepts, its type, its help.

The CLI builds ``strategyq submit backtest|screening`` options from this
table, and a test checks it against what the parsers and the trade model
read, so adding an arg is one line here (plus its validation where it is
used). Defaults are documented in the help; an arg left out of a task takes
its default where it is validated.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from strategyq.errors import TaskValidationError
from strategyq.protocol.envelope import TaskType
from strategyq.trademodel import TradeModel

BACKTEST = (TaskType.BACKTEST, TaskType.SWEEP)  # a sweep is a backtest per combination
ONLY_BACKTEST = (TaskType.BACKTEST,)
SWEEP = (TaskType.SWEEP,)
SCREENING = (TaskType.SCREENING,)
BOTH = (TaskType.BACKTEST, TaskType.SCREENING, TaskType.SWEEP)


@dataclass(frozen=True)
class TaskArg:
    """One optional or required key of a task's ``args``.

    Attributes:
        name: the key on the wire.
        kind: ``str``, ``int``, ``float``, ``bool`` or ``list`` (a list of strings,
            comma-separated on the command line).
        repeat: the option is given once per value (``--grid fast=5,10 --grid slow=50``);
            ``from_cli`` then receives the list of texts.
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
    from_cli: Callable[[Any], Any] | None = None
    repeat: bool = False

    @property
    def option(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")


def _model_help(name: str) -> str:
    """The trade model's own one-line help for its field ``name``."""
    (found,) = (f for f in fields(TradeModel) if f.name == name)
    return str(found.metadata["help"])


def parse_hold_days(value: str) -> int | None:
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


def _params(value: str) -> dict[str, Any]:
    """``--params '{"fast": 10}'``: a JSON object, the strategy's second argument."""
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise TaskValidationError(
            f"--params {value!r} is not JSON ({exc.msg}); write an object such as "
            '\'{"fast": 10, "slow": 50}\''
        ) from None
    if not isinstance(parsed, dict):
        raise TaskValidationError(
            f"--params must be a JSON object such as '{{\"fast\": 10}}', got {value!r}"
        )
    return parsed


def _grid_value(text: str) -> Any:
    lowered = text.lower()
    if lowered in {"true", "false"}:
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_grid(options: list[str]) -> dict[str, list[Any]]:
    """``["fast=5,10,20", "slow=50,100"]`` as a param_grid (numbers where they parse)."""
    grid: dict[str, list[Any]] = {}
    for option in options:
        name, sep, values = option.partition("=")
        if not sep or not name.strip() or not values.strip():
            raise TaskValidationError(
                f"--grid {option!r} must look like NAME=V1,V2,… (e.g. fast=5,10,20)"
            )
        grid[name.strip()] = [_grid_value(v.strip()) for v in values.split(",") if v.strip()]
    return grid


def _walk_forward(text: str) -> dict[str, int]:
    """``--walk-forward TRAIN:TEST`` as the sweep's ``walk_forward`` arg."""
    train, sep, test = text.partition(":")
    if not sep or not train.strip().isdigit() or not test.strip().isdigit():
        raise TaskValidationError(
            f"--walk-forward {text!r} must be TRAIN:TEST sessions, e.g. 504:126"
        )
    return {"train_sessions": int(train), "test_sessions": int(test)}


def _heatmap(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


TASK_ARGS: tuple[TaskArg, ...] = (
    # Both task types. strategy_code is the CLI's STRATEGY file argument.
    TaskArg("strategy_code", str, "Python source defining the strategy function.", BOTH, True),
    TaskArg("timeout_seconds", float, "Wall-clock limit of the strategy, seconds (default: the worker's STRATEGYQ_TIME_LIMIT, which also caps it).", BOTH),
    TaskArg("memory_mb", int, "Memory limit of the strategy, MiB (default and cap: STRATEGYQ_MEMORY_MB).", BOTH),
    TaskArg("max_instances", int, "Most instances kept from the strategy (default and cap: STRATEGYQ_MAX_INSTANCES).", BOTH),
    TaskArg("strict_symbols", bool, "Fail before the strategy runs when a symbol is not in the store (default: skip it with a warning that names the nearest stored ones).", BOTH),
    TaskArg("name", str, "A label for the run, e.g. 'sma cross' (the run archive lists a strategy's versions under it).", BOTH),
    TaskArg("tags", list, "Comma-separated labels to search runs by, e.g. trend,v2.", BOTH),
    # Backtests.
    TaskArg("symbols", list, "Tickers: AAPL,MSFT; @FILE (one per line, or a CSV ticker column); or all (every stored ticker).", BACKTEST, True),
    TaskArg("start_date", str, "First date, ISO 8601 (2010-01-01).", BACKTEST, True, "--start"),
    TaskArg("end_date", str, "Last date, ISO 8601 (2012-12-31).", BACKTEST, True, "--end"),
    TaskArg("adjusted", bool, "Split/dividend-adjusted prices (default: adjusted).", BACKTEST),
    TaskArg("lookback_sessions", int, "Sessions of history before --start the strategy sees (252).", BACKTEST),
    TaskArg("benchmark", str, "Ticker to compare against, e.g. SPY (default: equal weight).", BACKTEST),
    TaskArg("params", str, "JSON object passed as the strategy's second argument, e.g. '{\"fast\": 10}'.", ONLY_BACKTEST, from_cli=_params),
    # The trade model (strategyq.trademodel): its fields' own help.
    TaskArg("entry", str, _model_help("entry"), BACKTEST),
    TaskArg("hold_days", str, _model_help("hold_days"), BACKTEST, from_cli=parse_hold_days),
    TaskArg("exit_on", str, _model_help("exit_on"), BACKTEST),
    TaskArg("stop_loss_pct", float, _model_help("stop_loss_pct"), BACKTEST),
    TaskArg("take_profit_pct", float, _model_help("take_profit_pct"), BACKTEST),
    TaskArg("trailing_stop_pct", float, _model_help("trailing_stop_pct"), BACKTEST),
    TaskArg("commission_bps", float, _model_help("commission_bps"), BACKTEST),
    TaskArg("slippage_bps", float, _model_help("slippage_bps"), BACKTEST),
    TaskArg("initial_capital", float, _model_help("initial_capital"), BACKTEST),
    TaskArg("max_positions", int, _model_help("max_positions"), BACKTEST),
    TaskArg("max_entries_per_ticker", int, _model_help("max_entries_per_ticker"), BACKTEST),
    # Sweeps.
    TaskArg("param_grid", list, "NAME=V1,V2,… values of one parameter (repeat per parameter).", SWEEP, True, "--grid", parse_grid, repeat=True),
    TaskArg("maximize", str, "Metric to rank by (default sharpe_ratio).", SWEEP),
    TaskArg("top_n", int, "How many of the best to list (default 10).", SWEEP),
    TaskArg("constraint", str, "Condition on a combination, e.g. 'fast < slow'.", SWEEP),
    TaskArg("walk_forward", str, "TRAIN:TEST sessions (e.g. 504:126): optimise, then test out of sample.", SWEEP, from_cli=_walk_forward),
    TaskArg("heatmap_params", list, "X,Y: the two parameters of the heatmap (default: the first two).", SWEEP, flag="--heatmap", from_cli=_heatmap),
    # Screens.
    TaskArg("universe", list, "Tickers to screen: AAPL,MSFT; @FILE (one per line, or a CSV ticker column); or all (every stored ticker).", SCREENING, True),
    TaskArg("limit", int, "Results to return (default 100).", SCREENING),
    TaskArg("as_of", str, "Screen date, ISO 8601 (default: the latest session stored).", SCREENING),
    TaskArg("lookback_sessions", int, "Sessions of history before as_of in the frame (default 260).", SCREENING),
)  # fmt: skip


def args_for(task_type: TaskType) -> tuple[TaskArg, ...]:
    """The args a task type reads, in table order."""
    return tuple(a for a in TASK_ARGS if task_type in a.task_types)
