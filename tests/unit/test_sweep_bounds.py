"""A sweep's fan-out and a chunk's calls are bounded before the work that grows with them.

The sweep below is an ordinary 110 KiB message (5,000 combinations, walk-forward
with one-session test windows, about 150 folds, 80 KB of code) whose chunk
messages would take half a gigabyte: the size is computed arithmetically and
the sweep refused before any chunk message is built. A raw ``sweep_chunk``
with every combination and every fold is refused when it is parsed.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
import tracemalloc
from typing import Any

import orjson
import pytest

from strategyq.errors import TaskValidationError
from strategyq.protocol.chunks import chunk_messages
from strategyq.protocol.envelope import MalformedTask
from strategyq.protocol.task import MAX_CHUNK_CALLS, parse_task

CODE = "def s(df, params):\n    return []\n" + "# padding\n" * 8_000  # ~80 KB


def _folds(n: int) -> list[dict[str, Any]]:
    day = dt.date(2020, 1, 1)
    out = []
    for i in range(n):
        train_end = day + dt.timedelta(days=200 + i)
        out.append(
            {
                "fold": i,
                "train_start": (day + dt.timedelta(days=i)).isoformat(),
                "train_end": train_end.isoformat(),
                "test_start": (train_end + dt.timedelta(days=1)).isoformat(),
                "test_end": (train_end + dt.timedelta(days=1)).isoformat(),
                "train_sessions": 200,
                "test_sessions": 1,
            }
        )
    return out


def _sweep() -> bytes:
    return orjson.dumps(
        {
            "task_id": "big-sweep",
            "task_type": "sweep",
            "args": {
                "strategy_code": CODE,
                "symbols": ["SYN0001"],
                "start_date": "2020-01-01",
                "end_date": "2021-12-31",
                "param_grid": {"a": list(range(100)), "b": list(range(50))},
                "walk_forward": {"train_sessions": 200, "test_sessions": 1},
            },
        }
    )


def test_a_fan_out_over_the_cap_is_refused_before_any_chunk_is_built() -> None:
    raw = _sweep()
    assert len(raw) < 120 * 1024
    task = parse_task(raw, max_combinations=10_000)
    folds = _folds(150)
    tracemalloc.start()
    started = time.process_time()
    try:
        with pytest.raises(TaskValidationError, match="fan-out cap") as info:
            chunk_messages(task, folds, 25, 16 * 1024 * 1024)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    elapsed = time.process_time() - started
    assert "5000 chunk tasks" in str(info.value)
    # docs/security.md: planning costs a constant times the sweep's own bytes (here a few
    # copies of its code and folds), not the fan-out's half gigabyte.
    assert peak < 20 * len(raw), peak
    # CPU time, not wall time: a bound on the work done, which other processes on a
    # busy machine do not stretch.
    assert elapsed < 2, elapsed


def test_a_fan_out_within_the_cap_is_built() -> None:
    task = parse_task(_sweep(), max_combinations=10_000)
    chunks = chunk_messages(task, None, 25, 1 << 30)
    assert len(chunks) == 200 and len(chunks[0]["args"]["combinations"]) == 25


def _chunk(combinations: int, folds: list[dict[str, Any]] | None) -> bytes:
    return orjson.dumps(
        {
            "task_id": "victim/chunk/0000",
            "task_type": "sweep_chunk",
            "args": {
                "strategy_code": "def s(df, params):\n    return []\n",
                "symbols": ["SYN0001"],
                "start_date": "2020-01-01",
                "end_date": "2021-12-31",
                "sweep_id": "victim",
                "chunk": 0,
                "combinations": [[i, {"a": i}] for i in range(combinations)],
                "folds": folds,
            },
        }
    )


def test_a_raw_chunk_with_too_many_calls_is_refused_when_parsed() -> None:
    raw = _chunk(5_000, _folds(150))  # 1.5 M strategy calls in ~250 KiB
    started = time.process_time()  # the work, which a busy machine does not stretch
    with pytest.raises(MalformedTask, match=f"at most {MAX_CHUNK_CALLS}"):
        parse_task(raw, max_task_bytes=1 << 20)
    assert time.process_time() - started < 1
    with pytest.raises(MalformedTask, match="folds are malformed"):
        parse_task(_chunk(1, [{"fold": 0}]))
    with pytest.raises(MalformedTask, match="folds are malformed"):
        parse_task(_chunk(1, _folds(201)), max_task_bytes=1 << 20)
    # What a sweep's own chunks hold passes: 25 calls, or one combination × 150 folds.
    assert parse_task(_chunk(25, None)).task_type.value == "sweep_chunk"
    assert parse_task(_chunk(1, _folds(150)), max_task_bytes=1 << 20).args is not None


def _task(kind: str, **args: Any) -> bytes:
    base = {"strategy_code": "def s(df, params):\n    return []\n", "symbols": ["SYN0001"],
            "start_date": "2020-01-01", "end_date": "2020-12-31"}  # fmt: skip
    return orjson.dumps({"task_id": "t", "task_type": kind, "args": {**base, **args}})


PARSE_SHAPES = {
    "many params": _task("backtest", params={f"k{i}": 0 for i in range(90_000)}),
    "many symbols": _task("backtest", symbols=[f"S{i}" for i in range(5_000)]),
    "a long params list": _task("backtest", params={"x": [0] * 400_000}),
    "nested params": _task("backtest", params={"x": [[0]] * 200_000}),
    "many grid params": _task("sweep", param_grid={f"k{i}": [0] for i in range(50_000)}),
    "a long code": _task("backtest", strategy_code="#" * 1_000_000),
}


@pytest.mark.parametrize("name", list(PARSE_SHAPES))
def test_parsing_a_task_message_is_linear_in_its_bytes(name: str) -> None:
    raw = PARSE_SHAPES[name]
    parse_task(_task("sweep", param_grid={"a": [1]}))  # imports done, as in an executor
    tracemalloc.start()
    started = time.process_time()
    try:
        with contextlib.suppress(TaskValidationError):
            parse_task(raw, max_task_bytes=1 << 21)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    elapsed = time.process_time() - started
    # docs/security.md: parsing a task costs at most 40 × its bytes (measured ≤ 33 ×) and
    # about 1.5 µs of CPU a byte (5 µs allowed). CPU time, not wall time: other processes
    # on a busy machine stretch the wall clock, not the work.
    assert peak < 40 * len(raw), (name, peak / len(raw))
    assert elapsed < 0.5 + 5e-6 * len(raw), (name, elapsed)


def test_a_producer_cannot_submit_under_a_chunks_id() -> None:
    from strategyq.protocol.chunks import is_chunk_id
    from strategyq.protocol.task import parse_submitted

    message = orjson.loads(_task("backtest"))
    with pytest.raises(TaskValidationError, match="reserved for the chunks"):
        parse_submitted({**message, "task_id": "someone/chunk/0003"})
    assert parse_submitted({**message, "task_id": "my/chunk/notes"})[1].task_id == "my/chunk/notes"
    assert is_chunk_id("s/chunk/0000") and not is_chunk_id("s/chunk/x")
