"""The wire format: task messages in, result envelopes out.

A task is parsed once, at the edge, into a typed :class:`Task`; nothing
deeper in the code sees raw JSON. Results are plain JSON (no NaN, no numpy
types) with ISO 8601 UTC times ending in ``Z``.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

import orjson

from strategyq.errors import TaskValidationError
from strategyq.sweep.folds import WalkForward, parse_walk_forward
from strategyq.sweep.grid import Grid, expand
from strategyq.trademodel import TradeModel


class TaskType(StrEnum):
    BACKTEST = "backtest"
    SCREENING = "screening"
    SWEEP = "sweep"
    SWEEP_CHUNK = "sweep_chunk"
    """One chunk of a sweep's combinations; made by the worker that fans a sweep out."""


class Status(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    ERROR = "error"
    CANCELLED = "cancelled"


TERMINAL_STATUSES = frozenset({Status.COMPLETED, Status.ERROR, Status.CANCELLED})

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


class MalformedTask(TaskValidationError):
    """Raised when a queued message is not a valid task (``task_id`` set when readable)."""

    def __init__(self, message: str, task_id: str | None = None) -> None:
        super().__init__(message)
        self.task_id = task_id


@dataclass(frozen=True)
class RunOptions:
    """Per-task overrides shared by both task types (capped by the worker's maximums)."""

    timeout_s: float | None = None
    memory_mb: int | None = None
    max_instances: int | None = None


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


# ----------------------------------------------------------------------------- times


def utc_now_iso() -> str:
    """Now, as ``2024-01-15T10:30:00Z``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_datetime(value: Any, field_name: str) -> datetime:
    """A naive UTC datetime from the accepted date forms.

    Accepts ``2024-01-01T00:00:00``, ``…Z`` (Go's RFC3339), ``+00:00`` and other
    offsets (converted to UTC), fractional seconds, and plain ``2024-01-01``.
    """
    if not isinstance(value, str) or not value.strip():
        raise TaskValidationError(
            f"{field_name} must be an ISO 8601 date string such as '2024-01-01T00:00:00Z', "
            f"got {_show(value)}"
        )
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise TaskValidationError(
            f"{field_name}={_show(value)} is not a valid date; use ISO 8601 such as "
            "'2024-01-01', '2024-01-01T00:00:00' or '2024-01-01T00:00:00Z'"
        ) from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


# ----------------------------------------------------------------------------- parsing


def _require_str(args: Mapping[str, Any], name: str) -> str:
    value = args.get(name)
    if not isinstance(value, str) or not value.strip():
        raise TaskValidationError(f"args.{name} must be a non-empty string, got {_show(value)}")
    return value


def _symbols(args: Mapping[str, Any], name: str, max_symbols: int) -> tuple[str, ...]:
    value = args.get(name)
    if isinstance(value, str):
        value = [s for s in value.split(",")]
    if not isinstance(value, list) or not value:
        raise TaskValidationError(
            f"args.{name} must be a non-empty list of ticker strings, got {_show(value)}"
        )
    if len(value) > max_symbols:
        raise TaskValidationError(
            f"args.{name} has {len(value)} symbols; the limit is {max_symbols}: split the task"
        )
    out: list[str] = []
    seen: set[str] = set()
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise TaskValidationError(
                f"args.{name}[{i}] must be a ticker string, got {_show(item)}"
            )
        ticker = item.strip().upper()
        if len(ticker) > 32:
            raise TaskValidationError(f"args.{name}[{i}] is not a ticker: {_show(item)}")
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
        raise TaskValidationError(f"args.{name} must be {kind}, got {_show(value)}")
    return value


def _options(args: Mapping[str, Any]) -> RunOptions:
    return RunOptions(
        timeout_s=_positive_number(args, "timeout_seconds", integer=False),
        memory_mb=_positive_number(args, "memory_mb", integer=True),
        max_instances=_positive_number(args, "max_instances", integer=True),
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
        raise TaskValidationError(f"args.adjusted must be true or false, got {_show(adjusted)}")
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
            f"args.lookback_sessions={_show(lookback)} is not allowed; use a whole number from 0 "
            f"to {MAX_BACKTEST_LOOKBACK_SESSIONS} (sessions of history before start_date)"
        )
    benchmark = None
    raw_benchmark = args.get("benchmark")
    if raw_benchmark is not None:
        if not isinstance(raw_benchmark, str) or not raw_benchmark.strip():
            raise TaskValidationError(
                f"args.benchmark must be a ticker string such as 'SPY', got {_show(raw_benchmark)}"
            )
        benchmark = _symbols({"benchmark": [raw_benchmark]}, "benchmark", 1)[0]
    params = args.get("params")
    if params is not None and not isinstance(params, dict):
        raise TaskValidationError(
            f"args.params must be an object (the strategy's second argument), got {_show(params)}"
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
    )


def _metric(args: Mapping[str, Any]) -> str:
    from strategyq.engine.metrics import METRIC_NAMES

    metric = args.get("maximize", DEFAULT_MAXIMIZE)
    if metric not in METRIC_NAMES:
        raise TaskValidationError(
            f"args.maximize must name a metric ({', '.join(METRIC_NAMES)}), got {_show(metric)}"
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
                f"({', '.join(grid.names)}), got {_show(heatmap)}"
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
            f"args.limit must be a whole number from 1 to {max_limit}, got {_show(limit)}"
        )
    as_of = None
    if args.get("as_of") is not None:
        as_of = parse_datetime(args["as_of"], "args.as_of").date()
    lookback = _positive_number(args, "lookback_sessions", integer=True)
    return ScreeningArgs(
        strategy_code=code, universe=universe, limit=limit, as_of=as_of, lookback_sessions=lookback
    )


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
    message = _decode_object(data)
    task_id = _task_id(message)
    if len(data) > max_task_bytes:
        raise MalformedTask(_too_large(len(data), max_task_bytes), task_id)
    task_type = _task_type(message, task_id)
    args = message.get("args")
    if not isinstance(args, dict):
        raise MalformedTask(f"args must be a JSON object, got {_show(args)}", task_id)
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


@dataclass(frozen=True)
class Envelope:
    """What the worker reads of a message: enough to claim it and log it.

    The worker decodes the JSON once and checks only the envelope; the
    executor validates the args (with the worker's limits) in its one full
    parse, so a task is validated once per run, not once per process.
    """

    task_id: str
    task_type: TaskType
    strategy_code: str | None
    raw: bytes
    sweep_id: str | None = None
    """The sweep a ``sweep_chunk`` belongs to (its cancel flag stops the chunk)."""
    timeout_s: float | None = None  # the task's own time limit, when it asks for one


def read_envelope(raw: bytes, *, max_task_bytes: int, max_message_bytes: int) -> Envelope:
    """The envelope of one queued message.

    A message up to ``max_message_bytes`` is decoded to find its ``task_id``
    wherever it sits (Go's ``json.Marshal`` sorts keys: ``args`` comes first),
    so a producer hears back about an oversized task; beyond that hard cap the
    message is not decoded at all.

    Raises:
        MalformedTask: ``task_id`` set when the message named one, so the
            producer gets an error result; else it is for the dead letters.
    """
    if len(raw) > max_message_bytes:
        raise MalformedTask(
            f"message is {len(raw)} bytes, above the hard cap of {max_message_bytes} "
            "(STRATEGYQ_MAX_MESSAGE_BYTES); it was not read: send tasks of at most "
            f"{max_task_bytes} bytes (STRATEGYQ_MAX_TASK_BYTES)"
        )
    message = _decode_object(raw)
    task_id = _task_id(message)
    if len(raw) > max_task_bytes:
        raise MalformedTask(_too_large(len(raw), max_task_bytes), task_id)
    task_type = _task_type(message, task_id)
    args = message.get("args")
    code = args.get("strategy_code") if isinstance(args, dict) else None
    sweep_id = args.get("sweep_id") if isinstance(args, dict) else None
    # Read for the worker's deadline only; the executor validates it with the rest.
    asked = args.get("timeout_seconds") if isinstance(args, dict) else None
    timeout_s = (
        float(asked)
        if isinstance(asked, int | float) and not isinstance(asked, bool) and asked > 0
        else None
    )
    return Envelope(
        task_id,
        task_type,
        code if isinstance(code, str) else None,
        raw,
        sweep_id if task_type is TaskType.SWEEP_CHUNK and isinstance(sweep_id, str) else None,
        timeout_s,
    )


def _too_large(size: int, limit: int) -> str:
    return (
        f"task message is {size} bytes; the limit is {limit} "
        "(STRATEGYQ_MAX_TASK_BYTES): send less code or fewer symbols"
    )


def _decode_object(data: bytes) -> dict[str, Any]:
    try:
        message = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise MalformedTask(f"task message is not valid JSON: {exc}") from None
    if not isinstance(message, dict):
        raise MalformedTask(
            f"task message must be a JSON object, got a JSON {type(message).__name__}"
        )
    return message


def _task_id(message: Mapping[str, Any]) -> str:
    task_id = message.get("task_id")
    if not isinstance(task_id, str) or not task_id.strip() or len(task_id) > 200:
        raise MalformedTask(
            f"task_id must be a non-empty string of at most 200 characters, got {_show(task_id)}"
        )
    return task_id


def _task_type(message: Mapping[str, Any], task_id: str) -> TaskType:
    try:
        return TaskType(str(message.get("task_type")))
    except ValueError:
        raise MalformedTask(
            "task_type must be 'backtest', 'screening' or 'sweep', got "
            f"{_show(message.get('task_type'))}",
            task_id,
        ) from None


# ----------------------------------------------------------------------------- results


def dumps(value: Any) -> bytes:
    """Plain JSON bytes: NaN/Infinity become null, numpy scalars become numbers."""
    return orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)


def envelope(status: Status, data: Mapping[str, Any]) -> dict[str, Any]:
    """The result record stored at ``task_result:{id}``."""
    return {"status": status.value, "data": dict(data), "updated_at": utc_now_iso()}


def error_data(message: str, error_type: str, **extra: Any) -> dict[str, Any]:
    """The ``data`` of an error result."""
    return {"error": message, "error_type": error_type, "completed_at": utc_now_iso(), **extra}


def decode_result(raw: bytes | str | None) -> dict[str, Any] | None:
    """A stored result as a dict (None when absent or unreadable)."""
    if raw is None:
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None
