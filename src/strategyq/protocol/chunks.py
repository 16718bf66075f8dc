"""A sweep's chunk tasks: their ids, their messages, and the fan-out that carries them.

The executor plans a sweep and builds its chunk messages here; the worker
reads the same fan-out here and queues the messages as they are. A chunk is
a ``sweep_chunk`` task like any other: its record lives at
``task_result:{chunk id}``.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from strategyq.errors import TaskValidationError
from strategyq.protocol.envelope import TaskType
from strategyq.protocol.results import dumps
from strategyq.protocol.task import MAX_CHUNK_CALLS, SweepArgs, Task

MAX_FANOUT_BYTES = 16 * 1024 * 1024
"""Default cap on a sweep's chunk messages, all together (the worker's max_result_bytes)."""

GRID_CHUNK_FACTOR = 10
"""A whole-grid strategy's chunk holds this many times ``chunk_size`` combinations."""

# Args of a sweep that its chunks do not need.
_SWEEP_ONLY = ("param_grid", "constraint", "walk_forward", "top_n", "heatmap_params")


def chunk_id(sweep_id: str, index: int) -> str:
    """The task id of a sweep's chunk: ``{sweep_id}/chunk/0007``."""
    return f"{sweep_id}/chunk/{index:04d}"


_CHUNK_ID = re.compile(r"/chunk/\d{4,}$")


def is_chunk_id(task_id: str) -> bool:
    """Whether ``task_id`` has the form of a chunk's id (reserved for a sweep's chunks)."""
    return _CHUNK_ID.search(task_id) is not None


def chunk_messages(
    task: Task,
    folds: list[dict[str, Any]] | None,
    chunk_size: int,
    max_bytes: int = MAX_FANOUT_BYTES,
    *,
    whole_grid: bool = False,
) -> list[dict[str, Any]]:
    """The sweep's combinations as ``sweep_chunk`` tasks, in grid order.

    ``chunk_size`` counts strategy calls: a walk-forward combination makes two
    per fold (its training and its test window), so its chunks hold fewer
    combinations. A ``whole_grid`` strategy (``f(df, grid)``) is called once
    per chunk (twice per fold) whatever the chunk holds, so its chunks hold
    ``GRID_CHUNK_FACTOR`` times as many combinations: the child's fixed cost
    (fork, frame, one call) is then spread over many more.

    Raises:
        TaskValidationError: the messages would take more than ``max_bytes``; their
            size is computed from one chunk's fixed part and the grid before any is built.
    """
    args = task.args
    assert isinstance(args, SweepArgs)
    message = orjson.loads(task.raw)
    raw_args = {k: v for k, v in message["args"].items() if k not in _SWEEP_ONLY}
    # The chunks wait in the sweep's lane and count against the sweep's tenant.
    tenancy = {k: message[k] for k in ("tenant", "priority") if message.get(k) is not None}
    calls = 1 if folds is None else 2 * len(folds)
    size = chunk_size * GRID_CHUNK_FACTOR if whole_grid else chunk_size
    per_chunk = max(1, min(size, MAX_CHUNK_CALLS) // calls)
    _check_fanout_size(task, raw_args, folds, per_chunk, max_bytes)
    combos = list(enumerate(args.grid.combinations))
    return [
        {
            "task_id": chunk_id(task.task_id, n),
            "task_type": TaskType.SWEEP_CHUNK.value,
            **tenancy,
            "args": {
                **raw_args,
                "maximize": args.maximize,
                "sweep_id": task.task_id,
                "chunk": n,
                "combinations": [[i, c] for i, c in combos[at : at + per_chunk]],
                "folds": folds,
            },
        }
        for n, at in enumerate(range(0, len(combos), per_chunk))
    ]


def _check_fanout_size(
    task: Task,
    raw_args: dict[str, Any],
    folds: list[dict[str, Any]] | None,
    per_chunk: int,
    max_bytes: int,
) -> None:
    """Refuse a fan-out whose messages would exceed ``max_bytes``, before building them.

    Every chunk repeats the sweep's fixed args (its code, symbols, dates) and all its
    folds; the combinations are split among them. One chunk's fixed part is encoded
    once, each combination once: linear in the sweep's own bytes.
    """
    args = task.args
    assert isinstance(args, SweepArgs)
    total = len(args.grid)
    count = -(-total // per_chunk)
    fixed = len(
        orjson.dumps(
            {
                "task_id": chunk_id(task.task_id, count),
                "task_type": TaskType.SWEEP_CHUNK.value,
                "args": {
                    **raw_args,
                    "maximize": args.maximize,
                    "sweep_id": task.task_id,
                    "chunk": count,
                    "combinations": [],
                    "folds": folds,
                },
            }
        )
    )
    grid = len(orjson.dumps(list(args.grid.combinations))) + 16 * total
    size = count * fixed + grid
    if size > max_bytes:
        raise TaskValidationError(
            f"this sweep would queue {count} chunk tasks of about {fixed} bytes each "
            f"({size} bytes in all), more than the fan-out cap of {max_bytes} bytes "
            "(STRATEGYQ_MAX_RESULT_BYTES); use fewer combinations, fewer walk-forward folds "
            "(longer test windows), or shorter strategy code"
        )


def fanout(plan: dict[str, Any], chunks: list[dict[str, Any]]) -> dict[str, Any]:
    """The payload of a planned sweep: its plan and its chunk tasks, for the worker to queue."""
    return {"fanout": {"plan": plan, "chunks": chunks}}


def read_fanout(data: bytes) -> tuple[dict[str, Any], list[bytes]]:
    """A planned sweep's plan and its chunk messages, encoded as they are queued."""
    planned = orjson.loads(data)["fanout"]
    return dict(planned["plan"]), [dumps(c) for c in planned["chunks"]]


def chunk_position(raw: bytes) -> tuple[int, int]:
    """A chunk message's index in its sweep and how many combinations it holds."""
    args = orjson.loads(raw)["args"]
    return int(args["chunk"]), len(args["combinations"])
