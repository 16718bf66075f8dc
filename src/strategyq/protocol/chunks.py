"""A sweep's chunk tasks: their ids, their messages, and the fan-out that carries them.

The executor plans a sweep and builds its chunk messages here; the worker
reads the same fan-out here and queues the messages as they are. A chunk is
a ``sweep_chunk`` task like any other: its record lives at
``task_result:{chunk id}``.
"""

from __future__ import annotations

from typing import Any

import orjson

from strategyq.protocol.envelope import TaskType
from strategyq.protocol.results import dumps
from strategyq.protocol.task import SweepArgs, Task

# Args of a sweep that its chunks do not need.
_SWEEP_ONLY = ("param_grid", "constraint", "walk_forward", "top_n", "heatmap_params")


def chunk_id(sweep_id: str, index: int) -> str:
    """The task id of a sweep's chunk: ``{sweep_id}/chunk/0007``."""
    return f"{sweep_id}/chunk/{index:04d}"


def chunk_messages(
    task: Task, folds: list[dict[str, Any]] | None, chunk_size: int
) -> list[dict[str, Any]]:
    """The sweep's combinations as ``sweep_chunk`` tasks, in grid order.

    ``chunk_size`` counts strategy calls: a walk-forward combination makes two
    per fold (its training and its test window), so its chunks hold fewer
    combinations.
    """
    args = task.args
    assert isinstance(args, SweepArgs)
    raw_args = {k: v for k, v in orjson.loads(task.raw)["args"].items() if k not in _SWEEP_ONLY}
    calls = 1 if folds is None else 2 * len(folds)
    per_chunk = max(1, chunk_size // calls)
    combos = list(enumerate(args.grid.combinations))
    return [
        {
            "task_id": chunk_id(task.task_id, n),
            "task_type": TaskType.SWEEP_CHUNK.value,
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
