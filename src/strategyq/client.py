"""The producer API: the seed's functions, plus waiting and cancelling.

They work with any ``redis.Redis`` client, with or without
``decode_responses``. Arguments are validated here, before anything is
pushed, with the same rules the worker applies, so an invalid task is refused
at the producer with a clear message.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from typing import Any

import redis
from redis.exceptions import NoScriptError

from strategyq import keys
from strategyq.errors import TaskIdInUse, TaskValidationError
from strategyq.protocol import (
    DEFAULT_SCREENING_LIMIT,
    TERMINAL_STATUSES,
    Status,
    decode_result,
    dumps,
    envelope,
    parse_task,
    utc_now_iso,
)
from strategyq.scripts import source
from strategyq.settings import QUEUE_NAME

DEFAULT_RESULT_TTL_S = 86400


_PUSH = source("push")
_PUSH_SHA = hashlib.sha1(_PUSH.encode()).hexdigest()


def _push(
    redis_client: redis.Redis,
    message: dict[str, Any],
    *,
    queue: str,
    result_ttl_s: int,
) -> str:
    raw = dumps(message)
    try:
        task = parse_task(raw)
    except TaskValidationError as exc:
        raise TaskValidationError(f"task not queued: {exc}") from None
    now = utc_now_iso()
    queued = dumps({"status": "queued", "data": {"task_id": task.task_id, "queued_at": now},
                    "updated_at": now})  # fmt: skip
    # One command (EVALSHA; EVAL once after a server restart emptied its script
    # cache): the queued record is written before the push, so a worker that
    # takes the task at once always finds it.
    args = (2, keys.result(task.task_id), queue, queued, result_ttl_s, raw)
    try:
        reply = redis_client.execute_command("EVALSHA", _PUSH_SHA, *args)  # type: ignore[no-untyped-call]
    except NoScriptError:
        reply = redis_client.execute_command("EVAL", _PUSH, *args)  # type: ignore[no-untyped-call]
    if isinstance(reply, list):
        status = reply[1].decode() if isinstance(reply[1], bytes) else str(reply[1])
        raise TaskIdInUse(task.task_id, status)
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
        **options: optional task args (``hold_days``, ``entry``, ``stop_loss_pct``,
            ``take_profit_pct``, ``commission_bps``, ``slippage_bps``,
            ``initial_capital``, ``max_positions``, ``timeout_seconds``, …).

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
    return _push(redis_client, message, queue=queue, result_ttl_s=result_ttl_s)


def add_screening_task(
    redis_client: redis.Redis,
    task_id: str,
    strategy_code: str,
    universe: Sequence[str],
    limit: int = DEFAULT_SCREENING_LIMIT,
    *,
    queue: str = QUEUE_NAME,
    result_ttl_s: int = DEFAULT_RESULT_TTL_S,
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
    return _push(redis_client, message, queue=queue, result_ttl_s=result_ttl_s)


def get_task_result(redis_client: redis.Redis, task_id: str) -> dict[str, Any] | None:
    """The task's result record (``status``, ``data``, ``updated_at``), or None if there is none."""
    return decode_result(redis_client.get(keys.result(task_id)))


def _is_terminal(result: dict[str, Any] | None) -> bool:
    return result is not None and result.get("status") in TERMINAL_STATUSES


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
    deadline = time.monotonic() + timeout_s
    done_key = keys.done(task_id)
    # Block for at most the client's own socket timeout (less a margin) per call,
    # so a client built with a short socket_timeout never times out mid-BLPOP.
    socket_timeout = redis_client.connection_pool.connection_kwargs.get("socket_timeout")
    max_block = max(float(socket_timeout) - 0.5, 0.5) if socket_timeout else None
    result = get_task_result(redis_client, task_id)
    while not _is_terminal(result):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        block = min(remaining, max_block) if max_block else remaining
        try:
            popped = redis_client.blpop([done_key], timeout=max(block, 0.01))
        except redis.TimeoutError:
            popped = None
        if popped is None:
            result = get_task_result(redis_client, task_id)
            continue
        # Put the token back for any other waiter on the same task, and read the
        # result, in one round trip. The put-back is a courtesy: a server that refuses
        # it (OOM at maxmemory) must not hide a result that is there.
        pipe = redis_client.pipeline(transaction=False)
        pipe.rpush(done_key, popped[1])
        pipe.expire(done_key, keys.DONE_TTL_S)
        pipe.get(keys.result(task_id))
        replies = pipe.execute(raise_on_error=False)
        if isinstance(replies[2], Exception):
            raise replies[2]
        result = decode_result(replies[2])
    return result


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
    record = dumps(
        envelope(Status.CANCELLED, {"cancelled_at": utc_now_iso(), "completed_at": utc_now_iso()})
    )
    script = redis_client.register_script(source("cancel"))
    status = script(
        keys=[keys.result(task_id), keys.cancel(task_id), keys.done(task_id)],
        args=[result_ttl_s, record, min(keys.DONE_TTL_S, result_ttl_s)],
    )
    return status.decode() if isinstance(status, bytes) else str(status)
