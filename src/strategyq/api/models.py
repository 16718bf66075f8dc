"""Request and response bodies of the ``/v1`` API (they make the OpenAPI document)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from strategyq.protocol.task import PRODUCER_TASK_TYPES

TASK_TYPES = [t.value for t in PRODUCER_TASK_TYPES]

EXAMPLE_CODE = (
    "def gap_up_strategy(df):\n"
    "    hits = df[(df['gap_pct'] > 3.0) & (df['volume_ratio'] > 1.5)]\n"
    "    return [{'ticker': r.ticker, 'date': str(r.date), 'signal': True} "
    "for r in hits.itertuples()]\n"
)


DATE = r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$"
TICKER = r"^\S{1,32}$"
TICKERS: dict[str, Any] = {"items": {"type": "string", "pattern": TICKER}}


class BacktestArgs(BaseModel):
    """The args of a backtest (documentation: the worker's rules validate them)."""

    model_config = ConfigDict(extra="allow", title="BacktestArgs")

    strategy_code: str = Field(..., min_length=1, max_length=256 * 1024)
    symbols: list[str] = Field(..., min_length=1, max_length=5000, json_schema_extra=TICKERS)
    start_date: str = Field(..., pattern=DATE, examples=["2010-01-01T00:00:00Z"])
    end_date: str = Field(..., pattern=DATE, examples=["2012-12-31T23:59:59Z"])
    hold_days: int | None = Field(None, ge=1)
    entry: Literal["next_open", "close"] | None = None
    stop_loss_pct: float | None = Field(None, gt=0)
    take_profit_pct: float | None = Field(None, gt=0)
    commission_bps: float | None = Field(None, ge=0)
    slippage_bps: float | None = Field(None, ge=0)
    initial_capital: float | None = Field(None, gt=0)
    max_positions: int | None = Field(None, ge=1)
    adjusted: bool | None = None
    timeout_seconds: float | None = Field(None, gt=0)
    memory_mb: int | None = Field(None, ge=1)
    max_instances: int | None = Field(None, ge=1)


class ScreeningArgs(BaseModel):
    """The args of a screen (documentation: the worker's rules validate them)."""

    model_config = ConfigDict(extra="allow", title="ScreeningArgs")

    strategy_code: str = Field(..., min_length=1, max_length=256 * 1024)
    universe: list[str] = Field(..., min_length=1, max_length=5000, json_schema_extra=TICKERS)
    limit: int | None = Field(None, ge=1, le=10_000)
    as_of: str | None = Field(None, pattern=DATE)
    lookback_sessions: int | None = Field(None, ge=1)
    timeout_seconds: float | None = Field(None, gt=0)


def _args_schema() -> dict[str, Any]:
    # Documented shapes only: the body is validated by the producer API's own
    # rules (parse_task), so the messages are the same as for Python producers.
    return {"anyOf": [BacktestArgs.model_json_schema(), ScreeningArgs.model_json_schema()]}


class TaskIn(BaseModel):
    """A task as on the wire, with ``task_id`` optional (a UUID is made when it is absent)."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {
                    "task_type": "backtest",
                    "args": {
                        "strategy_code": EXAMPLE_CODE,
                        "symbols": ["AAPL", "MSFT"],
                        "start_date": "2010-01-01T00:00:00Z",
                        "end_date": "2012-12-31T23:59:59Z",
                    },
                }
            ]
        },
    )

    task_id: str | None = Field(
        None, max_length=200, description="The caller's id; generated (a UUID) when absent."
    )
    task_type: str = Field(
        ...,
        description="What to run: " + ", ".join(TASK_TYPES) + ".",
        json_schema_extra={"enum": list[Any](TASK_TYPES)},
    )
    args: dict[str, Any] = Field(
        ...,
        description="The task's args exactly as on the wire (strategy_code, symbols, "
        "start_date, end_date, … or strategy_code, universe, limit, …).",
        json_schema_extra=_args_schema(),
    )
    tenant: str | None = Field(
        None,
        max_length=64,
        description="Whose task it is (e.g. the end user's id): tenants are served in turn "
        "and have quotas. Default: 'default'.",
    )
    priority: str | None = Field(
        None,
        max_length=32,
        description="The lane: 'interactive' (a screen's default), 'batch' (a backtest's or "
        "sweep's default) or a lane the operator added.",
    )


class Links(BaseModel):
    self: str
    wait: str
    events: str
    page: str


class Submitted(BaseModel):
    task_id: str
    status: Literal["queued"]
    links: Links


class TaskRecord(BaseModel):
    """The stored result record: ``status``, ``data`` and ``updated_at``, as on the wire."""

    model_config = ConfigDict(extra="allow")

    status: str = Field(..., description="queued, running, completed, error or cancelled.")
    data: dict[str, Any] = Field(default_factory=dict)
    updated_at: str | None = None


class Cancelled(BaseModel):
    task_id: str
    previous_status: str = Field(
        ..., description="The status when asked: queued, running, a terminal one, or unknown."
    )


class InFlight(BaseModel):
    model_config = ConfigDict(extra="allow")

    task_id: str
    attempts: int
    status: str | None = None
    stage: str | None = None


class WorkerOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    worker_id: str
    alive: bool
    heartbeat_age_s: float | None = None
    layers: list[str] = Field(default_factory=list)
    in_flight: list[InFlight] = Field(default_factory=list)


class Bucket(BaseModel):
    end_ms: int
    finished: int
    failed: int


class QueueStats(BaseModel):
    queue: str
    depth: int
    in_flight: int
    workers_alive: int
    dead_letters: int
    recent_tasks: int
    finished_last_hour: int
    failed_last_hour: int
    throughput: list[Bucket]
    workers: list[WorkerOut]


class TaskSummary(BaseModel):
    model_config = ConfigDict(extra="allow")

    task_id: str
    finished_ms: int
    status: str | None = None
    task_type: str | None = None


class TaskList(BaseModel):
    total: int = Field(..., description="Tasks in the index that match (all pages).")
    offset: int
    tasks: list[TaskSummary]


class DeadLetter(BaseModel):
    model_config = ConfigDict(extra="allow")

    task_id: str | None = None
    reason: str | None = None
    attempts: int | None = None
    at: str | None = None
    error: str | None = None


class Skipped(BaseModel):
    entry: str
    reason: str


class Count(BaseModel):
    count: int
    skipped: list[Skipped] | None = Field(
        None, description="Dead letters left in place, and why (retries only)."
    )


class ScheduleIn(BaseModel):
    """A schedule to add: validated by the same rules as ``strategyq schedule add``."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {
                    "name": "close-screen",
                    "cron": "30 21 * * 1-5",
                    "tz": "America/New_York",
                    "task_type": "screening",
                    "args": {
                        "strategy_code": EXAMPLE_CODE,
                        "universe": ["AAPL", "MSFT", "IBM"],
                        "limit": 2,
                    },
                }
            ]
        },
    )

    name: str = Field(
        ...,
        max_length=200,
        description="1-100 letters, digits, '_', '.' or '-' (part of each run's task id).",
        json_schema_extra={"pattern": r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$"},
    )
    cron: str = Field(..., max_length=200, description="Five cron fields, e.g. '30 21 * * 1-5'.")
    tz: str = Field("UTC", max_length=100, description="IANA time zone of the cron times.")
    task_type: str = Field(
        ...,
        description="What each run queues: " + ", ".join(TASK_TYPES) + ".",
        json_schema_extra={"enum": list[Any](TASK_TYPES)},
    )
    args: dict[str, Any] = Field(
        ...,
        description="The task's args exactly as on the wire (as for POST /v1/tasks).",
        json_schema_extra=_args_schema(),
    )
    replace: bool = Field(False, description="Replace a schedule of the same name.")


class ScheduleOut(BaseModel):
    """A schedule, its state and its next run."""

    name: str
    cron: str
    when: str = Field(..., description="The cron expression in words.")
    tz: str
    task_type: str
    args: dict[str, Any] = Field(
        ..., description="The task's args (strategy_code hidden from read-scope callers)."
    )
    created_at: str
    paused: bool
    last_slot: str | None = Field(
        None, description="The latest slot queued (or the time the schedule was added/resumed)."
    )
    next_slot: str = Field(..., description="The next slot (skipped while paused).")


class QuotasIn(BaseModel):
    """Quotas to set (a positive number) or remove (0 or null); absent ones are unchanged."""

    model_config = ConfigDict(extra="forbid")

    max_in_flight: int | None = Field(None, ge=0, description="Tasks running at once.")
    max_queued: int | None = Field(None, ge=0, description="Tasks waiting.")
    max_result_bytes: int | None = Field(None, ge=0, description="Bytes of results stored.")
    max_combinations: int | None = Field(
        None, ge=0, description="Sweep combinations per day (UTC)."
    )


class WaitOut(BaseModel):
    samples: int
    p50_s: float
    p95_s: float


class TenantOut(BaseModel):
    tenant: str
    queued: int
    in_flight: int
    result_bytes: int
    combinations_today: int
    quotas: dict[str, int]
    wait: dict[str, WaitOut] = Field(description="Wait times by lane, of its last tasks.")


class LaneIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    weight: int = Field(..., ge=1, le=1000, description="Tasks taken per round, against others.")


class LaneOut(BaseModel):
    name: str
    weight: int
    depth: int
    tenants_waiting: int
    builtin: bool


class Tenants(BaseModel):
    lanes: list[LaneOut]
    tenants: list[TenantOut]
