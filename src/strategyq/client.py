"""The producer API: the seed's functions, plus waiting and cancelling.

They work with any ``redis.Redis`` client, with or without
``decode_responses``. Arguments are validated here, before anything is
pushed, with the same rules the worker applies, so an invalid task is refused
at the producer with a clear message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import redis

from strategyq.check import require_runnable
from strategyq.errors import TaskValidationError
from strategyq.protocol.task import (
    DEFAULT_MAXIMIZE,
    DEFAULT_SCREENING_LIMIT,
    DEFAULT_TOP_N,
    SweepArgs,
    parse_submitted,
)
from strategyq.protocol.tenancy import tenant_and_lane, with_tenancy
from strategyq.queue import TaskQueue
from strategyq.settings import DEFAULT_RESULT_TTL_S, QUEUE_NAME


def submit_task(
    redis_client: redis.Redis,
    message: dict[str, Any],
    *,
    queue: str = QUEUE_NAME,
    result_ttl_s: int = DEFAULT_RESULT_TTL_S,
    tenant: str | None = None,
    priority: str | None = None,
) -> str:
    """Validate a whole wire task (``task_id``, ``task_type``, ``args``) and queue it.

    The one place every Python producer (``add_backtest_task``,
    ``add_screening_task``, ``add_sweep_task``, the HTTP API) writes a task to Redis: the
    ``queued`` record and the push happen in one command. ``tenant`` and ``priority``
    (the lane) set the message's fields of those names when given; a message without
    them runs as tenant ``default`` in its type's lane (docs/queue.md).

    Returns:
        The task id.

    Raises:
        TaskValidationError: the task is invalid; nothing was queued.
        StrategyRejected: the strategy has a syntax error or a construct the sandbox
            refuses (``error_type`` ``syntax`` or ``policy``); nothing was queued.
        TaskIdInUse: a task with this id is queued, running, or finished within the
            result TTL; nothing was queued.
        TenantQuotaExceeded: the tenant is at one of its quotas (``retry_after_s`` says
            when to try again); nothing was queued.
    """
    try:
        message = with_tenancy(dict(message), tenant, priority)
        raw, task = parse_submitted(message)
    except TaskValidationError as exc:
        raise TaskValidationError(f"task not queued: {exc}") from None
    # The sandbox's own check, so a syntax error or a refused construct is reported
    # here, with every finding, instead of by a worker.
    require_runnable(task.strategy_code)
    tenant_name, lane = tenant_and_lane(message)
    combinations = len(task.args.grid) if isinstance(task.args, SweepArgs) else 0
    TaskQueue(redis_client, name=queue, result_ttl_s=result_ttl_s).push(
        task.task_id, raw, tenant=tenant_name, lane=lane, combinations=combinations
    )
    return task.task_id


def add_backtest_task(
    redis_client: redis.Redis,
    task_id: str,
    strategy_code: str,
    symbols: Sequence[str],
    start_date: str,
    end_date: str,
    *,
    queue: str = QUEUE_NAME,
    result_ttl_s: int = DEFAULT_RESULT_TTL_S,
    tenant: str | None = None,
    priority: str | None = None,
    **options: Any,
) -> str:
    """Queue a backtest of ``strategy_code`` over ``symbols`` from ``start_date`` to ``end_date``.

    Args:
        redis_client: any redis-py client.
        task_id: the caller's id; the result appears at ``task_result:{task_id}``.
        strategy_code: Python source defining one strategy function of ``df``.
        symbols: tickers to load.
        start_date: ISO 8601 date or datetime (``2024-01-01``, ``…T00:00:00Z``).
        end_date: ISO 8601 date or datetime.
        queue: the list to push onto.
        result_ttl_s: lifetime of the ``queued`` record.
        tenant: whose task it is (e.g. the end user's id); default ``default``.
        priority: the lane it waits in: ``interactive``, ``batch`` (the default for a
            backtest) or a lane the operator added.
        **options: optional task args (``hold_days``, ``entry``, ``exit_on``,
            ``stop_loss_pct``, ``take_profit_pct``, ``trailing_stop_pct``,
            ``max_entries_per_ticker``, ``commission_bps``, ``slippage_bps``,
            ``initial_capital``, ``max_positions``, ``lookback_sessions``,
            ``benchmark``, ``timeout_seconds``, …); see docs/engine.md.

    Returns:
        The task id.

    Raises:
        TaskValidationError: the task is invalid; nothing was queued.
        TaskIdInUse: a task with this id is queued, running, or finished within the
            result TTL; nothing was queued.
    """
    args = {
        "strategy_code": strategy_code,
        "symbols": list(symbols) if not isinstance(symbols, str) else symbols,
        "start_date": start_date,
        "end_date": end_date,
        **options,
    }
    message = {"task_id": task_id, "task_type": "backtest", "args": args}
    return submit_task(
        redis_client,
        message,
        queue=queue,
        result_ttl_s=result_ttl_s,
        tenant=tenant,
        priority=priority,
    )


def add_screening_task(
    redis_client: redis.Redis,
    task_id: str,
    strategy_code: str,
    universe: Sequence[str],
    limit: int = DEFAULT_SCREENING_LIMIT,
    *,
    queue: str = QUEUE_NAME,
    result_ttl_s: int = DEFAULT_RESULT_TTL_S,
    tenant: str | None = None,
    priority: str | None = None,
    **options: Any,
) -> str:
    """Queue a screen of ``universe`` with ``strategy_code``, keeping the best ``limit`` results.

    Optional ``options``: ``as_of`` (date of the screen; default the latest
    session stored), ``lookback_sessions``, ``timeout_seconds``.

    Raises:
        TaskValidationError: the task is invalid; nothing was queued.
        TaskIdInUse: a task with this id is queued, running, or finished within the
            result TTL; nothing was queued.
    """
    args = {
        "strategy_code": strategy_code,
        "universe": list(universe) if not isinstance(universe, str) else universe,
        "limit": limit,
        **options,
    }
    message = {"task_id": task_id, "task_type": "screening", "args": args}
    return submit_task(
        redis_client,
        message,
        queue=queue,
        result_ttl_s=result_ttl_s,
        tenant=tenant,
        priority=priority,
    )


def add_sweep_task(
    redis_client: redis.Redis,
    task_id: str,
    strategy_code: str,
    symbols: Sequence[str],
    start_date: str,
    end_date: str,
    param_grid: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]],
    *,
    maximize: str = DEFAULT_MAXIMIZE,
    top_n: int = DEFAULT_TOP_N,
    constraint: str | None = None,
    walk_forward: Mapping[str, Any] | None = None,
    queue: str = QUEUE_NAME,
    result_ttl_s: int = DEFAULT_RESULT_TTL_S,
    tenant: str | None = None,
    priority: str | None = None,
    **options: Any,
) -> str:
    """Queue a parameter sweep: a backtest of every combination of ``param_grid``.

    The strategy takes the combination as its second argument,
    ``def my_strategy(df, params): ...``. The sweep's combinations are run in
    chunks by any workers; its result (``execution_mode: "sweep"``) ranks every
    combination by ``maximize`` and carries the best one's full backtest.

    Args:
        param_grid: ``{"fast": [5, 10, 20], "slow": [50, 100]}`` (every
            combination) or a list of explicit combinations.
        maximize: the metric to rank by (any key of ``performance_metrics``).
        top_n: how many of the best combinations ``top`` lists.
        constraint: a condition on the combination, e.g. ``"fast < slow"``.
        walk_forward: ``{"train_sessions": 504, "test_sessions": 126}`` to
            optimise on each training window and test the winner on the next.
        **options: the backtest's optional args (``hold_days``, ``entry``, …)
            and ``heatmap_params`` (two parameter names).

    Raises:
        TaskValidationError: the sweep is invalid; nothing was queued.
    """
    args: dict[str, Any] = {
        "strategy_code": strategy_code,
        "symbols": list(symbols) if not isinstance(symbols, str) else symbols,
        "start_date": start_date,
        "end_date": end_date,
        "param_grid": dict(param_grid)
        if isinstance(param_grid, Mapping)
        else [dict(c) for c in param_grid],
        "maximize": maximize,
        "top_n": top_n,
        **options,
    }
    if constraint is not None:
        args["constraint"] = constraint
    if walk_forward is not None:
        args["walk_forward"] = dict(walk_forward)
    message = {"task_id": task_id, "task_type": "sweep", "args": args}
    return submit_task(
        redis_client,
        message,
        queue=queue,
        result_ttl_s=result_ttl_s,
        tenant=tenant,
        priority=priority,
    )


def get_task_result(redis_client: redis.Redis, task_id: str) -> dict[str, Any] | None:
    """The task's result record (``status``, ``data``, ``updated_at``), or None if there is none."""
    return TaskQueue(redis_client).result(task_id)


def wait_for_result(
    redis_client: redis.Redis, task_id: str, timeout_s: float = 60.0
) -> dict[str, Any] | None:
    """Block until the task's result is terminal (completed, error or cancelled).

    The worker pushes onto a per-task notification list when it writes a
    terminal result; this reads the result first and then blocks on that list,
    so a result written in between is never missed, and no polling happens.

    Returns:
        The terminal result, or None when ``timeout_s`` passed first.
    """
    return TaskQueue(redis_client).wait(task_id, timeout_s)


def cancel_task(
    redis_client: redis.Redis, task_id: str, *, result_ttl_s: int = DEFAULT_RESULT_TTL_S
) -> str:
    """Ask for a task to be cancelled.

    A queued task ends ``cancelled`` at once; a running one has its sandbox
    killed by its worker and ends ``cancelled`` moments later; a finished one
    is left as it is.

    Returns:
        The status the task had when asked (``unknown`` when there is no record).
    """
    return TaskQueue(redis_client, result_ttl_s=result_ttl_s).cancel(task_id)
