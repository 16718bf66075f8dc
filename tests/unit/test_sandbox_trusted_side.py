"""The trusted side stays bounded: policy-compliant answers that used to stall an executor.

A real executor process (with its sandbox host) runs the tasks, as a worker's
slot does; each hostile answer must end within the task's deadline, the
executor's peak memory must stay within the documented bound of the answer's
bytes, and the executor must answer the next task.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from strategyq import errors
from strategyq.data.synth import write_synthetic
from strategyq.executor.client import ExecutorProcess as Executor
from strategyq.executor.client import RunOutcome
from strategyq.executor.watchdog import CANCEL_GRACE_S, ENGINE_ALLOWANCE_S, Watchdog
from strategyq.sandbox import result
from strategyq.settings import Settings

TIME_LIMIT_S = 2.0


@pytest.fixture(scope="module")
def executor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Executor]:
    home = tmp_path_factory.mktemp("trusted") / "home"
    write_synthetic(home / "data", 3, 1, seed=3)
    # The tasks here pass the policy and import no optional library: only the lean fork
    # server forks their children, so the full one is not started.
    settings = Settings.from_env(
        {
            "STRATEGYQ_HOME": str(home),
            "STRATEGYQ_TIME_LIMIT": "30",
            "STRATEGYQ_SANDBOX_LIBRARIES": "none",
        }
    )
    ex = Executor(settings)
    assert ex.start()["canary"]
    try:
        yield ex
    finally:
        ex.close()


def _task(code: str, timeout_s: float = TIME_LIMIT_S) -> bytes:
    return orjson.dumps(
        {
            "task_id": "t",
            "task_type": "backtest",
            "args": {
                "strategy_code": code,
                "symbols": ["SYN0001", "SYN0002"],
                "start_date": "2024-06-01",
                "end_date": "2024-12-31",
                "timeout_seconds": timeout_s,
            },
        }
    )


def _peak_rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def _reset_peak(pid: int) -> None:
    # Writing 5 to clear_refs resets the peak RSS (VmHWM) to the current RSS.
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")


def _run(
    executor: Executor, code: str, timeout_s: float = TIME_LIMIT_S
) -> tuple[float, RunOutcome]:
    started = time.monotonic()
    outcome = executor.run(_task(code, timeout_s), lambda _stage: None)
    return time.monotonic() - started, outcome


NORMAL = "def s(df):\n    return [{'ticker': 'SYN0001', 'date': '2024-07-01'}]\n"


def test_long_key_times_long_list_ends_within_the_deadline(executor: Executor) -> None:
    code = (
        "def s(df):\n    k = 'k' * 8_000_000\n    return [{'ticker': 'SYN0001', k: [0] * 20000}]\n"
    )
    elapsed, outcome = _run(executor, code)
    # Generous: the point is that it ends at all within the task's own budget.
    assert elapsed < TIME_LIMIT_S + ENGINE_ALLOWANCE_S + 10, outcome
    elapsed, outcome = _run(executor, NORMAL)
    assert outcome.ok, outcome


def test_millions_of_tiny_objects_are_refused_within_a_bound(executor: Executor) -> None:
    assert executor.pid is not None
    code = "def s(df):\n    return [{'ticker': 'SYN0001'}] + [{}] * 7_000_000\n"
    answer_mib = (len(b'{"ticker":"SYN0001"}') + 3 * 7_000_000) / 2**20
    _run(executor, NORMAL)
    _reset_peak(executor.pid)
    before = _peak_rss_mib(executor.pid)
    _elapsed, outcome = _run(executor, code, timeout_s=30)
    growth = _peak_rss_mib(executor.pid) - before
    assert outcome.error_type == "bad_result", outcome
    assert "dicts and lists" in outcome.error
    # docs/security.md: a refused answer costs the executor at most 4 × its bytes.
    assert growth < 4 * answer_mib, (growth, answer_mib)
    _elapsed, outcome = _run(executor, NORMAL)
    assert outcome.ok, outcome


def test_print_reaches_the_result_and_the_error(executor: Executor) -> None:
    code = "def s(df):\n    print('hello from the strategy')\n    return [{'ticker': 'SYN0001'}]\n"
    _elapsed, outcome = _run(executor, code)
    data = orjson.loads(outcome.data)
    assert data["logs"] == "hello from the strategy\n" and data["logs_truncated"] is False
    code = "def s(df):\n    print('before the error')\n    raise ValueError('boom')\n"
    _elapsed, outcome = _run(executor, code)
    assert outcome.error_type == "strategy_error"
    assert outcome.extra == {"logs": "before the error\n", "logs_truncated": False}


def test_container_bound_is_checked_before_parsing() -> None:
    # What a child that skipped its own check would send: the parent refuses it unparsed.
    body = b"[" + b"{}," * 100_000 + b"{}]"
    with pytest.raises(errors.BadResult, match="dicts and lists"):
        result.decode_answer(result.RESULT_TAG + body)
    fine = orjson.dumps([{"ticker": "A", "w": [1, 2, 3, 4]}] * 1000)
    assert len(result.decode_answer(result.RESULT_TAG + fine)[0]) == 1000


def test_watchdog_stops_python_work_at_its_deadline() -> None:
    started = time.monotonic()
    with pytest.raises(errors.StrategyTimeout), Watchdog(0.3, None, time_limit_s=0.1):
        while True:
            sum(range(1000))
    assert time.monotonic() - started < 30


def test_watchdog_stops_on_cancel_after_the_grace() -> None:
    read_fd, write_fd = os.pipe()
    try:
        threading.Timer(0.2, os.write, (write_fd, b"c")).start()
        guard = Watchdog(60, read_fd, time_limit_s=60)
        with pytest.raises(errors.TaskCancelled), guard:
            while True:
                sum(range(1000))
        assert guard.fired is not None
        assert os.read(read_fd, 1) == b"c"  # left for the next task's drain
    finally:
        os.close(read_fd)
        os.close(write_fd)
    assert CANCEL_GRACE_S < 1


def test_watchdog_that_did_not_fire_leaves_no_trace() -> None:
    guard = Watchdog(60, None, time_limit_s=60)
    with guard:
        pass
    assert guard.fired is None
    time.sleep(0.05)  # a late signal would raise here


def test_paths_are_spelled_only_on_error() -> None:
    from strategyq.engine.jsonvalues import NotJsonable, to_json

    key = "k" * 1_000_000
    assert to_json({key: [0] * 50_000})[key][-1] == 0
    with pytest.raises(NotJsonable) as info:
        to_json({"a": [1, {"b": [object()]}]}, "f")
    assert info.value.path == "f.a[1].b[0]"


def test_answer_shape_unchanged_for_plain_results(tmp_path: Path) -> None:
    body = orjson.dumps([{"ticker": "A", "date": "2024-01-02"}])
    trailer = result.encode_logs("x\n", False)
    instances, logs = result.decode_answer(result.RESULT_TAG + body + trailer)
    assert instances == [{"ticker": "A", "date": "2024-01-02"}]
    assert logs.fields() == {"logs": "x\n", "logs_truncated": False}


def _chunk(code: str, combinations: int = 1, timeout_s: float = 30) -> bytes:
    return orjson.dumps(
        {
            "task_id": "sweep-t/chunk/0000",
            "task_type": "sweep_chunk",
            "args": {
                "strategy_code": code,
                "symbols": ["SYN0001", "SYN0002"],
                "start_date": "2024-06-01",
                "end_date": "2024-12-31",
                "timeout_seconds": timeout_s,
                "sweep_id": "sweep-t",
                "chunk": 0,
                "combinations": [[i, {"k": i}] for i in range(combinations)],
                "folds": None,
            },
        }
    )


def test_a_columnar_answer_of_zeros_is_refused_before_its_rows_are_built(
    executor: Executor,
) -> None:
    """One column of 3,000,000 zeros as a chunk's answer: 6 MB that would make 3 M row dicts."""
    assert executor.pid is not None
    code = (
        "def s(df, params):\n    return pd.DataFrame({'a': np.zeros(3_000_000, dtype=np.int64)})\n"
    )
    answer_mib = 2 * 3_000_000 / 2**20
    normal = "def s(df, params):\n    return [{'ticker': 'SYN0001', 'date': '2024-07-01'}]\n"
    assert executor.run(_chunk(normal), lambda _stage: None).ok
    _reset_peak(executor.pid)
    before = _peak_rss_mib(executor.pid)
    started = time.monotonic()
    outcome = executor.run(_chunk(code), lambda _stage: None)
    elapsed = time.monotonic() - started
    growth = _peak_rss_mib(executor.pid) - before
    assert outcome.error_type == "bad_result", outcome  # type: ignore[attr-defined]
    assert "too many rows for its size" in outcome.error  # type: ignore[attr-defined]
    # docs/security.md: reading and parsing an answer costs at most 20 × its bytes (a
    # column of small integers is the densest: ~13 ×); its rows are counted before any
    # is built, and refused past 12 × more.
    assert growth < 20 * answer_mib, (growth, answer_mib)
    assert elapsed < 30 + ENGINE_ALLOWANCE_S, elapsed
    _elapsed, outcome = _run(executor, NORMAL)
    assert outcome.ok, outcome  # type: ignore[attr-defined]


def test_columnar_answers_of_real_rows_still_pass() -> None:
    # Ticker, date and a value per row: well within the rows' bound.
    rows = 20_000
    columns = {
        "ticker": ["SYN0001"] * rows,
        "date": ["2024-07-01T00:00:00"] * rows,
        "w": [0.5] * rows,
    }
    body = orjson.dumps([{"columns": columns}])
    (run,), _ = result.decode_answer(result.RUNS_TAG + body)
    assert len(run) == rows and run[0] == {
        "ticker": "SYN0001",
        "date": "2024-07-01T00:00:00",
        "w": 0.5,
    }


def test_logs_past_the_cap_are_cut_and_flagged_by_the_parent() -> None:
    trailer = orjson.dumps({"logs": "é" * (5 << 20), "truncated": False})
    head = result.ERROR_TAG + orjson.dumps({"type": "strategy_error", "message": "boom"})
    with pytest.raises(errors.StrategyFailed) as info:
        result.decode_answer(head + result.LOGS_SEPARATOR + trailer)
    logs = info.value.logs  # type: ignore[attr-defined]
    assert logs.truncated is True
    assert len(logs.text.encode()) <= result.LOGS_MAX_BYTES
    assert len(logs.text.encode()) > result.LOGS_MAX_BYTES - 4


def test_an_error_record_fits_the_result_cap_with_its_logs() -> None:
    from strategyq.executor.main import ERROR_TEXT_MAX_BYTES, error_reply

    exc = errors.StrategyFailed("x" * 100_000)
    exc.logs = result.Logs('"\\' * 30_000, False)  # type: ignore[attr-defined]
    record = orjson.loads(error_reply(exc, 64 * 1024))
    assert len(error_reply(exc, 64 * 1024)) <= 64 * 1024
    assert len(record["error"]) == ERROR_TEXT_MAX_BYTES
    assert record["logs_truncated"] is True and record["logs"]
    small = errors.StrategyFailed("boom")
    small.logs = result.Logs("hi\n", False)  # type: ignore[attr-defined]
    assert orjson.loads(error_reply(small, 64 * 1024)) == {
        "ok": False, "error": "boom", "error_type": "strategy_error",
        "logs": "hi\n", "logs_truncated": False,
    }  # fmt: skip


def test_a_single_frame_of_zeros_fails_as_its_rows_did(executor: Executor) -> None:
    """A backtest's answer of 3 M one-field rows: the child sends it as rows, refused as before."""
    frame = "pd.DataFrame({'a': np.zeros(3_000_000, dtype=np.int64)})"
    as_frame = f"def s(df):\n    return {frame}\n"
    as_rows = f"def s(df):\n    return {frame}.to_dict(orient='records')\n"
    _elapsed, got = _run(executor, as_frame, timeout_s=30)
    _elapsed, want = _run(executor, as_rows, timeout_s=30)
    assert got.error_type == want.error_type == "bad_result", got  # type: ignore[attr-defined]
    assert got.error == want.error and "dicts and lists" in got.error  # type: ignore[attr-defined]
    _elapsed, outcome = _run(executor, NORMAL)
    assert outcome.ok, outcome  # type: ignore[attr-defined]
