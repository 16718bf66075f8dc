"""Task messages: the typed :class:`Task` and its args, parsed once at the edge.

Nothing deeper in the code sees a task's raw JSON: :func:`parse_task` (the
executor's one full parse) and :func:`parse_submitted` (a producer's check)
turn a message into a :class:`Task` or a :class:`MalformedTask` that says
what to fix.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime
from typing import Any

import orjson

from strategyq.errors import TaskValidationError
from strategyq.protocol.envelope import (
    MalformedTask,
    TaskType,
    decode_message,
    message_task_id,
    message_task_type,
    show,
    too_large,
)
from strategyq.protocol.results import dumps
from strategyq.protocol.tenancy import tenant_and_lane
from strategyq.sweep.folds import MAX_FOLDS, WalkForward, parse_walk_forward
from strategyq.sweep.grid import Grid, expand
from strategyq.trademodel import TradeModel

DEFAULT_SCREENING_LIMIT = 100
DEFAULT_TOP_N = 10
DEFAULT_MAXIMIZE = "sharpe_ratio"
MAX_CODE_BYTES = 256 * 1024
DEFAULT_BACKTEST_LOOKBACK_SESSIONS = 252
"""Rows before ``start_date`` a backtest's strategy sees (a 52-week high is valid from day one)."""
MAX_BACKTEST_LOOKBACK_SESSIONS = 5_000
MAX_SWEEP_ID_CHARS = 180
TRADE_ARGS = frozenset(f.name for f in fields(TradeModel))
"""Sweep parameters with these names set the trade model too (``hold_days``, ``stop_loss_pct``)."""


@dataclass(frozen=True)
class RunOptions:
    """Per-task overrides shared by both task types (capped by the worker's maximums)."""

    timeout_s: float | None = None
    memory_mb: int | None = None
    max_instances: int | None = None
    name: str | None = None
    """A label for the run (the archive lists a strategy's versions under it)."""
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class BacktestArgs:
    """A backtest's args; ``model`` is the validated trade model, ``trade_args`` the raw args.

    ``lookback_sessions`` is how many sessions before ``start`` the strategy's
    frame holds (signals on them never trade); ``benchmark`` an optional ticker
    to compare against.
    """

    strategy_code: str
    symbols: tuple[str, ...]
    start: datetime
    end: datetime
    start_raw: str
    end_raw: str
    adjusted: bool = True
    trade_args: Mapping[str, Any] = field(default_factory=dict)
    model: TradeModel = field(default_factory=TradeModel)
    lookback_sessions: int = DEFAULT_BACKTEST_LOOKBACK_SESSIONS
    benchmark: str | None = None
    params: Mapping[str, Any] | None = None
    """The strategy's ``params`` argument (a ``f(df, params)`` strategy)."""
    strict_symbols: bool = False
    """A symbol missing from the store fails the task before the strategy runs."""


@dataclass(frozen=True)
class SweepArgs:
    """A sweep: the backtest's args, and the grid searched over them."""

    backtest: BacktestArgs
    grid: Grid
    maximize: str
    top_n: int
    constraint: str | None = None
    walk_forward: WalkForward | None = None
    heatmap: tuple[str, str] | None = None

    @property
    def strategy_code(self) -> str:
        return self.backtest.strategy_code


@dataclass(frozen=True)
class ChunkArgs:
    """One chunk of a sweep: some of its combinations, run in one sandbox child."""

    backtest: BacktestArgs
    sweep_id: str
    chunk: int
    combinations: tuple[tuple[int, dict[str, Any]], ...]
    maximize: str
    folds: tuple[dict[str, Any], ...] | None = None

    @property
    def strategy_code(self) -> str:
        return self.backtest.strategy_code


@dataclass(frozen=True)
class ScreeningArgs:
    strategy_code: str
    universe: tuple[str, ...]
    limit: int
    as_of: date | None = None
    lookback_sessions: int | None = None
    strict_symbols: bool = False


@dataclass(frozen=True)
class Task:
    task_id: str
    task_type: TaskType
    args: BacktestArgs | ScreeningArgs | SweepArgs | ChunkArgs
    options: RunOptions
    raw: bytes

    @property
    def strategy_code(self) -> str:
        return self.args.strategy_code


def parse_datetime(value: Any, field_name: str) -> datetime:
    """A naive UTC datetime from the accepted date forms.

    Accepts ``2024-01-01T00:00:00``, ``…Z`` (Go's RFC3339), ``+00:00`` and other
    offsets (converted to UTC), fractional seconds, and plain ``2024-01-01``.
    """
    if not isinstance(value, str) or not value.strip():
        raise TaskValidationError(
            f"{field_name} must be an ISO 8601 date string such as '2024-01-01T00:00:00Z', "
            f"got {show(value)}"
        )
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise TaskValidationError(
            f"{field_name}={show(value)} is not a valid date; use ISO 8601 such as "
            "'2024-01-01', '2024-01-01T00:00:00' or '2024-01-01T00:00:00Z'"
        ) from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


def _require_str(args: Mapping[str, Any], name: str) -> str:
    value = args.get(name)
    if not isinstance(value, str) or not value.strip():
        raise TaskValidationError(f"args.{name} must be a non-empty string, got {show(value)}")
    return value


def _symbols(args: Mapping[str, Any], name: str, max_symbols: int) -> tuple[str, ...]:
    value = args.get(name)
    if isinstance(value, str):
        value = [s for s in value.split(",")]
    if not isinstance(value, list) or not value:
        raise TaskValidationError(
            f"args.{name} must be a non-empty list of ticker strings, got {show(value)}"
        )
    if len(value) > max_symbols:
        raise TaskValidationError(
            f"args.{name} has {len(value)} symbols; the limit is {max_symbols}: split the task"
        )
    out: list[str] = []
    seen: set[str] = set()
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise TaskValidationError(f"args.{name}[{i}] must be a ticker string, got {show(item)}")
        ticker = item.strip().upper()
        if len(ticker) > 32:
            raise TaskValidationError(f"args.{name}[{i}] is not a ticker: {show(item)}")
        if ticker not in seen:
            seen.add(ticker)
            out.append(ticker)
    return tuple(out)


def _positive_number(args: Mapping[str, Any], name: str, *, integer: bool) -> Any:
    value = args.get(name)
    if value is None:
        return None
    ok = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok or not math.isfinite(value) or value <= 0:
        kind = "a positive whole number" if integer else "a positive number"
        raise TaskValidationError(f"args.{name} must be {kind}, got {show(value)}")
    return value


MAX_NAME_CHARS = 200
MAX_TAGS = 32
MAX_TAG_CHARS = 64
_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/+-]*$")


def _name(args: Mapping[str, Any]) -> str | None:
    value = args.get("name")
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_NAME_CHARS:
        raise TaskValidationError(
            f"args.name must be a non-empty string of at most {MAX_NAME_CHARS} characters "
            f"(a label such as 'sma cross'), got {show(value)}"
        )
    return value.strip()


def _tags(args: Mapping[str, Any]) -> tuple[str, ...]:
    value = args.get("tags")
    if value is None:
        return ()
    if isinstance(value, str):
        value = [t.strip() for t in value.split(",") if t.strip()]
    if not isinstance(value, list) or len(value) > MAX_TAGS:
        raise TaskValidationError(
            f"args.tags must be a list of at most {MAX_TAGS} tags such as "
            f'["trend", "v2"], got {show(value)}'
        )
    for tag in value:
        if not isinstance(tag, str) or len(tag) > MAX_TAG_CHARS or not _TAG.match(tag):
            raise TaskValidationError(
                f"args.tags: {show(tag)} is not a tag; use letters, digits and _ . : / + - "
                f"(at most {MAX_TAG_CHARS} characters, starting with a letter or digit)"
            )
    return tuple(dict.fromkeys(value))


def _options(args: Mapping[str, Any]) -> RunOptions:
    return RunOptions(
        timeout_s=_positive_number(args, "timeout_seconds", integer=False),
        memory_mb=_positive_number(args, "memory_mb", integer=True),
        max_instances=_positive_number(args, "max_instances", integer=True),
        name=_name(args),
        tags=_tags(args),
    )


def _backtest_args(args: Mapping[str, Any], max_symbols: int) -> BacktestArgs:
    code = _require_str(args, "strategy_code")
    symbols = _symbols(args, "symbols", max_symbols)
    start_raw, end_raw = args.get("start_date"), args.get("end_date")
    start = parse_datetime(start_raw, "args.start_date")
    end = parse_datetime(end_raw, "args.end_date")
    if start > end:
        raise TaskValidationError(
            f"args.start_date ({start_raw}) is after args.end_date ({end_raw}); swap them"
        )
    adjusted = args.get("adjusted", True)
    if not isinstance(adjusted, bool):
        raise TaskValidationError(f"args.adjusted must be true or false, got {show(adjusted)}")
    try:
        model = TradeModel.from_args(args)
    except TaskValidationError as exc:
        raise TaskValidationError(f"args.{exc}") from None
    lookback = args.get("lookback_sessions")
    if lookback is None:
        lookback = DEFAULT_BACKTEST_LOOKBACK_SESSIONS
    elif (
        isinstance(lookback, bool)
        or not isinstance(lookback, int)
        or not 0 <= lookback <= MAX_BACKTEST_LOOKBACK_SESSIONS
    ):
        raise TaskValidationError(
            f"args.lookback_sessions={show(lookback)} is not allowed; use a whole number from 0 "
            f"to {MAX_BACKTEST_LOOKBACK_SESSIONS} (sessions of history before start_date)"
        )
    benchmark = None
    raw_benchmark = args.get("benchmark")
    if raw_benchmark is not None:
        if not isinstance(raw_benchmark, str) or not raw_benchmark.strip():
            raise TaskValidationError(
                f"args.benchmark must be a ticker string such as 'SPY', got {show(raw_benchmark)}"
            )
        benchmark = _symbols({"benchmark": [raw_benchmark]}, "benchmark", 1)[0]
    params = args.get("params")
    if params is not None and not isinstance(params, dict):
        raise TaskValidationError(
            f"args.params must be an object (the strategy's second argument), got {show(params)}"
        )
    return BacktestArgs(
        strategy_code=code,
        symbols=symbols,
        start=start,
        end=end,
        start_raw=str(start_raw),
        end_raw=str(end_raw),
        adjusted=adjusted,
        trade_args=dict(args),
        model=model,
        lookback_sessions=lookback,
        benchmark=benchmark,
        params=params,
        strict_symbols=_flag(args, "strict_symbols"),
    )


def _metric(args: Mapping[str, Any]) -> str:
    from strategyq.engine.metrics import METRIC_NAMES

    metric = args.get("maximize", DEFAULT_MAXIMIZE)
    if metric not in METRIC_NAMES:
        raise TaskValidationError(
            f"args.maximize must name a metric ({', '.join(METRIC_NAMES)}), got {show(metric)}"
        )
    return str(metric)


def _sweep_args(
    task_id: str, args: Mapping[str, Any], max_symbols: int, max_combinations: int
) -> SweepArgs:
    if len(task_id) > MAX_SWEEP_ID_CHARS:
        raise TaskValidationError(
            f"a sweep's task_id may have at most {MAX_SWEEP_ID_CHARS} characters "
            "(its chunks' ids extend it)"
        )
    backtest = _backtest_args(args, max_symbols)
    if "param_grid" not in args:
        raise TaskValidationError(
            'args.param_grid is required for a sweep, e.g. {"fast": [5, 10], "slow": [50, 100]}'
        )
    constraint = args.get("constraint")
    grid = expand(args["param_grid"], constraint, max_combinations=max_combinations)
    top_n = args.get("top_n", DEFAULT_TOP_N)
    if isinstance(top_n, bool) or not isinstance(top_n, int) or not 1 <= top_n <= 1000:
        raise TaskValidationError(
            f"args.top_n must be a whole number from 1 to 1000, got {top_n!r}"
        )
    walk = args.get("walk_forward")
    heatmap = args.get("heatmap_params")
    if heatmap is not None:
        if (
            not isinstance(heatmap, list)
            or len(heatmap) != 2
            or not all(h in grid.names for h in heatmap)
            or heatmap[0] == heatmap[1]
        ):
            raise TaskValidationError(
                "args.heatmap_params must name two different parameters of the grid "
                f"({', '.join(grid.names)}), got {show(heatmap)}"
            )
        pair: tuple[str, str] | None = (str(heatmap[0]), str(heatmap[1]))
    else:
        pair = (grid.names[0], grid.names[1]) if len(grid.names) >= 2 else None
    checked: set[tuple[tuple[str, Any], ...]] = set()
    for combo in grid.combinations:
        overrides = tuple((k, v) for k, v in combo.items() if k in TRADE_ARGS)
        if overrides and overrides not in checked:
            checked.add(overrides)
            try:
                TradeModel.from_args({**args, **dict(overrides)})
            except TaskValidationError as exc:
                raise TaskValidationError(f"args.param_grid sets the trade model: {exc}") from None
    return SweepArgs(
        backtest=backtest,
        grid=grid,
        maximize=_metric(args),
        top_n=top_n,
        constraint=str(constraint) if constraint is not None else None,
        walk_forward=parse_walk_forward(walk) if walk is not None else None,
        heatmap=pair,
    )


MAX_CHUNK_CALLS = 1000
"""Strategy calls in one chunk at most (combinations × 2 × folds with walk-forward)."""
_FOLD_DATES = ("train_start", "train_end", "test_start", "test_end")


def _check_chunk_size(combos: list[Any], folds: Any) -> None:
    """A chunk's calls are bounded as a sweep's chunks are: at most MAX_FOLDS folds of four
    dates each, at most MAX_CHUNK_CALLS strategy calls (combinations × 2 × folds)."""
    if folds is not None and (
        not isinstance(folds, list)
        or len(folds) > MAX_FOLDS
        or not all(
            isinstance(f, dict) and all(isinstance(f.get(k), str) for k in _FOLD_DATES)
            for f in folds
        )
    ):
        raise TaskValidationError(
            "a sweep_chunk task is made by a worker; this one's folds are malformed"
        )
    calls = len(combos) * (2 * len(folds) if folds else 1)
    if not combos or calls > max(MAX_CHUNK_CALLS, 2 * len(folds or ())):
        raise TaskValidationError(
            f"a sweep_chunk task is made by a worker; this one asks for {calls} strategy "
            f"calls (at most {MAX_CHUNK_CALLS})"
        )


def _chunk_args(args: Mapping[str, Any], max_symbols: int) -> ChunkArgs:
    backtest = _backtest_args(args, max_symbols)
    combos = args.get("combinations")
    sweep_id, chunk = args.get("sweep_id"), args.get("chunk")
    if (
        not isinstance(sweep_id, str)
        or not isinstance(chunk, int)
        or not isinstance(combos, list)
        or not all(
            isinstance(c, list) and len(c) == 2 and isinstance(c[0], int) and isinstance(c[1], dict)
            for c in combos
        )
    ):
        raise TaskValidationError("a sweep_chunk task is made by a worker; this one is malformed")
    folds = args.get("folds")
    _check_chunk_size(combos, folds)
    return ChunkArgs(
        backtest=backtest,
        sweep_id=sweep_id,
        chunk=chunk,
        combinations=tuple((int(c[0]), dict(c[1])) for c in combos),
        maximize=_metric(args),
        folds=tuple(folds) if isinstance(folds, list) else None,
    )


def _screening_args(args: Mapping[str, Any], max_symbols: int, max_limit: int) -> ScreeningArgs:
    code = _require_str(args, "strategy_code")
    universe = _symbols(args, "universe", max_symbols)
    limit = args.get("limit", DEFAULT_SCREENING_LIMIT)
    if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0 or limit > max_limit:
        raise TaskValidationError(
            f"args.limit must be a whole number from 1 to {max_limit}, got {show(limit)}"
        )
    as_of = None
    if args.get("as_of") is not None:
        as_of = parse_datetime(args["as_of"], "args.as_of").date()
    lookback = _positive_number(args, "lookback_sessions", integer=True)
    return ScreeningArgs(
        strategy_code=code,
        universe=universe,
        limit=limit,
        as_of=as_of,
        lookback_sessions=lookback,
        strict_symbols=_flag(args, "strict_symbols"),
    )


def _flag(args: Mapping[str, Any], name: str) -> bool:
    value = args.get(name, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise TaskValidationError(f"args.{name} must be true or false, got {show(value)}")
    return value


def parse_task(
    raw: bytes | str,
    *,
    max_task_bytes: int = 1024 * 1024,
    max_symbols: int = 5_000,
    max_limit: int = 10_000,
    max_combinations: int = 10_000,
) -> Task:
    """Parse and validate one queued message.

    Raises:
        MalformedTask: with a message that says what to fix, and the ``task_id``
            when the message had a usable one (so the producer gets an error result).
    """
    data = raw.encode() if isinstance(raw, str) else raw
    message = decode_message(data)
    task_id = message_task_id(message)
    if len(data) > max_task_bytes:
        raise MalformedTask(too_large(len(data), max_task_bytes), task_id)
    task_type = message_task_type(message, task_id)
    try:
        tenant_and_lane(message)
    except TaskValidationError as exc:
        raise MalformedTask(str(exc), task_id) from None
    args = message.get("args")
    if not isinstance(args, dict):
        raise MalformedTask(f"args must be a JSON object, got {show(args)}", task_id)
    code = args.get("strategy_code")
    if isinstance(code, str) and len(code.encode()) > MAX_CODE_BYTES:
        raise MalformedTask(
            f"args.strategy_code is larger than {MAX_CODE_BYTES // 1024} KiB", task_id
        )
    try:
        parsed: BacktestArgs | ScreeningArgs | SweepArgs | ChunkArgs
        if task_type is TaskType.BACKTEST:
            parsed = _backtest_args(args, max_symbols)
        elif task_type is TaskType.SWEEP:
            parsed = _sweep_args(task_id, args, max_symbols, max_combinations)
        elif task_type is TaskType.SWEEP_CHUNK:
            parsed = _chunk_args(args, max_symbols)
        else:
            parsed = _screening_args(args, max_symbols, max_limit)
        options = _options(args)
    except TaskValidationError as exc:
        raise MalformedTask(str(exc), task_id) from None
    return Task(task_id=task_id, task_type=task_type, args=parsed, options=options, raw=data)


PRODUCER_TASK_TYPES = (TaskType.BACKTEST, TaskType.SCREENING, TaskType.SWEEP)
"""What a producer may submit; ``sweep_chunk`` is pushed only by the worker fanning a sweep out."""


def parse_submitted(message: Mapping[str, Any]) -> tuple[bytes, Task]:
    """Encode and validate a task a producer submits (the Python API, HTTP, schedules).

    The same rules as :func:`parse_task`, and internal task types are refused:
    a worker runs the ``sweep_chunk`` tasks it fans out itself, a producer may not.

    Raises:
        TaskValidationError: with what to fix.
    """
    try:
        raw = dumps(message)
    except orjson.JSONEncodeError as exc:
        raise TaskValidationError(
            f"it cannot be written as JSON ({exc}); integers must fit in "
            "64 bits and strings must be valid Unicode"
        ) from None
    _printable_id(message.get("task_id"))
    if message.get("task_type") == TaskType.SWEEP_CHUNK.value:
        raise TaskValidationError(
            "task_type 'sweep_chunk' is made by the worker that fans a sweep out and cannot "
            "be submitted; submit the whole sweep as task_type 'sweep' (docs/sweeps.md)"
        )
    task_id = message.get("task_id")
    if isinstance(task_id, str) and re.search(r"/chunk/\d{4,}$", task_id):
        raise TaskValidationError(
            f"task_id {task_id!r} has the form of a sweep chunk's id (<sweep id>/chunk/<n>), "
            "which is reserved for the chunks a worker queues; pick another id"
        )
    return raw, parse_task(raw)


def _printable_id(task_id: Any) -> None:
    # An id travels in URLs, headers and log lines: a control character (CR, LF, NUL)
    # or a Unicode line/paragraph separator would split them. Any other character,
    # non-Latin-1 and emoji included, is kept and percent-encoded where it must be.
    if not isinstance(task_id, str):
        return
    bad = [c for c in task_id if unicodedata.category(c) in ("Cc", "Zl", "Zp")]
    if bad:
        raise TaskValidationError(
            f"task_id {task_id[:60]!r} holds the control character U+{ord(bad[0]):04X}; "
            "use letters, digits and punctuation (no line breaks or tabs)"
        )
