"""Local runs (``strategyq run``, ``strategyq.backtest``) give what the queue gives."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import redis

from strategyq import LocalSession, Result, add_sweep_task
from strategyq.client import submit_task
from strategyq.examples import source
from strategyq.settings import Settings
from tests import warm_cli
from tests.integration.conftest import Burst

ROOT = Path(__file__).resolve().parents[2]

# What differs between two runs of one task: when, how long, and where it ran.
RUN_FIELDS = {"execution_time_ms", "execution_time_seconds", "worker_id", "completed_at",
              "started_at", "submitted_at"}  # fmt: skip


def comparable(record: dict[str, Any]) -> dict[str, Any]:
    data = {k: v for k, v in record["data"].items() if k not in RUN_FIELDS}
    return {"status": record["status"], "data": data}


@pytest.fixture(scope="module")
def local(module_worker_env: dict[str, str]) -> Iterator[LocalSession]:
    """One session for the module, as a notebook keeps one: its executor outlives each run
    (a run that times out or is interrupted gets a fresh one, which the tests check).

    Its sweeps run in chunks of two combinations, as the queue's do in
    test_local_sweep_equals_the_queue_result (only sweeps read the chunk size, and the
    module's other sweep, of two combinations, is one chunk at any size).
    """
    settings = replace(Settings.from_env(module_worker_env), sweep_chunk_size=2)
    with LocalSession(settings) as session:
        yield session


BACKTESTS = [
    ("gap_up", {"symbols": ["AAPL", "MSFT", "GOOG", "APPL"], "start_date": "2010-01-01",
                "end_date": "2012-12-31"}),
    ("sma_cross", {"symbols": ["AAPL", "IBM"], "start_date": "2010-01-01",
                   "end_date": "2012-12-31", "exit_on": "close", "trailing_stop_pct": 8,
                   "benchmark": "MSFT", "max_positions": 1}),
    ("sma_params", {"symbols": ["AAPL"], "start_date": "2008-01-01", "end_date": "2012-12-31",
                    "params": {"fast": 10, "slow": 50}, "commission_bps": 5}),
]  # fmt: skip


@pytest.mark.parametrize(("name", "args"), BACKTESTS, ids=[b[0] for b in BACKTESTS])
def test_local_backtest_equals_the_queue_result(
    redis_client: redis.Redis, settings: Settings, local: LocalSession, name: str,
    args: dict[str, Any], burst: Burst,
) -> None:  # fmt: skip
    message = {"task_id": f"bt-{name}", "task_type": "backtest",
               "args": {"strategy_code": source(name), **args}}  # fmt: skip
    submit_task(redis_client, message)
    burst(settings)
    queued = Result.from_task(redis_client, f"bt-{name}")
    here = local.run(message)
    assert queued.ok and here["status"] == "completed", (queued.raw, here)
    assert comparable(here) == comparable(queued.raw)
    assert here["data"]["worker_id"] == "local"
    assert here["data"]["performance_metrics"]["num_trades"] > 0


def test_local_screen_and_error_equal_the_queue(
    redis_client: redis.Redis, settings: Settings, local: LocalSession, burst: Burst
) -> None:
    failing = "def f(df):\n    return df['gap_percent'] > 1\n"
    messages = [
        {"task_id": "sc", "task_type": "screening", "args": {
            "strategy_code": source("momentum_screen"),
            "universe": ["AAPL", "MSFT", "GOOG", "IBM", "FB"], "limit": 3}},
        {"task_id": "err", "task_type": "backtest", "args": {
            "strategy_code": failing, "symbols": ["AAPL"], "start_date": "2011-01-01",
            "end_date": "2011-06-30"}},
    ]  # fmt: skip
    for message in messages:
        submit_task(redis_client, message)
    burst(settings)
    for message in messages:
        queued = Result.from_task(redis_client, message["task_id"])
        here = local.run(message)
        assert comparable(here) == comparable(queued.raw), message["task_id"]
    err = Result(here, task_id="err")
    assert err.status == "error" and "did you mean 'gap_pct'" in str(err.error)
    assert "df's columns: ticker, date, open" in str(err.error)


@pytest.mark.parametrize("walk", [None, {"train_sessions": 252, "test_sessions": 126}])
def test_local_sweep_equals_the_queue_result(
    redis_client: redis.Redis, settings: Settings, local: LocalSession,
    walk: dict[str, int] | None, burst: Burst,
) -> None:  # fmt: skip
    grid = {"fast": [5, 10, 20], "slow": [50, 100]}
    extra: dict[str, Any] = {"walk_forward": walk} if walk else {}
    add_sweep_task(redis_client, "sw", source("sma_params"), ["AAPL", "MSFT"], "2006-01-01",
                   "2010-12-31", grid, constraint="fast < slow", top_n=3, **extra)  # fmt: skip
    burst(settings, sweep_chunk_size=2)
    queued = Result.from_task(redis_client, "sw")
    message = {"task_id": "sw", "task_type": "sweep", "args": {
        "strategy_code": source("sma_params"), "symbols": ["AAPL", "MSFT"],
        "start_date": "2006-01-01", "end_date": "2010-12-31", "param_grid": grid,
        "constraint": "fast < slow", "top_n": 3, "maximize": "sharpe_ratio", **extra}}  # fmt: skip
    here = local.run(message)
    assert queued.ok, queued.raw
    assert comparable(here) == comparable(queued.raw)
    result = Result(here, task_id="sw")
    if walk is None:
        assert result.heatmap.shape == (2, 3) and result.heatmap.index.name == "slow"
        assert set(result.best_params) == {"fast", "slow"}
        assert len(result.results) == 6
        assert len(result.plot().data) == 1  # the heatmap
    else:
        assert here["data"]["walk_forward"]["folds"]


def _same_task(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` without what the added helper changes: the code echoed, and the width of
    the strategy's frame (the indicators it may read are found in its code)."""
    data = {k: v for k, v in record["data"].items() if k != "task_args"}
    for holder in (data.get("summary"), (data.get("best_result") or {}).get("summary")):
        if isinstance(holder, dict):
            holder["data_shape"] = holder["data_shape"][:1]
    return {**record, "data": data}


AS_ROWS = {
    "sma_cross": "\n\ndef as_rows(df):\n    return sma_cross(df).to_dict(orient='records')\n",
    "sma_params": "\n\ndef as_rows(df, params):\n"
    "    return sma_cross_strategy(df, params).to_dict(orient='records')\n",
}


@pytest.mark.parametrize(
    ("name", "args"),
    [
        (
            "sma_cross",
            {
                "symbols": ["AAPL", "IBM", "NOPE"],
                "start_date": "2010-01-01",
                "end_date": "2012-12-31",
                "max_positions": 1,
                "max_instances": 9,
            },
        ),
        (
            "sma_params",
            {
                "symbols": ["AAPL", "MSFT"],
                "start_date": "2008-01-01",
                "end_date": "2012-12-31",
                "params": {"fast": 10, "slow": 50},
            },
        ),
        (
            "sma_params",
            {
                "symbols": ["AAPL", "MSFT"],
                "start_date": "2006-01-01",
                "end_date": "2010-12-31",
                "param_grid": {"fast": [5, 10], "slow": [50]},
                "top_n": 2,
            },
        ),
    ],
    ids=["backtest", "params", "sweep"],
)
def test_a_returned_frame_gives_the_result_of_its_rows(
    local: LocalSession, name: str, args: dict[str, Any]
) -> None:
    """The frame travels as columns and is read column-wise; its rows (the same strategy
    returning ``to_dict(orient="records")``) travel and are read one by one: same result."""
    kind = "sweep" if "param_grid" in args else "backtest"
    runs = [
        local.run({"task_id": f"{kind}-{i}", "task_type": kind,
                   "args": {"strategy_code": code, **args}})
        for i, code in enumerate((source(name), source(name) + AS_ROWS[name]))
    ]  # fmt: skip
    frame, rows = (_same_task(comparable(r)) for r in runs)
    assert frame["status"] == "completed", frame
    assert frame == rows
    if kind == "backtest":
        assert frame["data"]["summary"]["num_trades"] > 0
        assert frame["data"]["summary"]["warmup_instances"] > 0


def test_python_api_result_objects(settings: Settings, local: LocalSession, tmp_path: Path) -> None:
    strategy = tmp_path / "strat.py"
    strategy.write_text(source("sma_cross"))
    first = local.backtest(strategy, "AAPL,MSFT", "2005-01-01", "2012-12-31", benchmark="IBM")
    again = local.backtest(source("sma_cross"), ["AAPL", "MSFT"], "2005-01-01", "2012-12-31",
                           benchmark="IBM")  # fmt: skip
    assert comparable(first.raw) == comparable(again.raw)
    metrics = first.metrics
    assert metrics.dtype == "float64" and {"total_return", "sharpe_ratio", "max_drawdown"} <= set(
        metrics.index
    )
    trades = first.trades
    assert pd.api.types.is_datetime64_any_dtype(trades["entry_date"])
    assert trades["return"].dtype == "float64" and len(trades) == metrics["num_trades"]
    assert isinstance(first.equity.index, pd.DatetimeIndex) and first.equity.dtype == "float64"
    assert first.drawdown.min() == pytest.approx(metrics["max_drawdown"], abs=1e-6)
    assert not first.benchmark.empty
    figure = first.plot()
    names = {t.name for t in figure.data}
    assert {"equity", "drawdown %", "entry", "exit"} <= names
    assert any((n or "").startswith("benchmark") for n in names)
    size = first.to_html(tmp_path / "report.html")
    assert size > 100_000 and "plotly" in (tmp_path / "report.html").read_text()[:200_000].lower()


def test_warmup_instances_are_left_out_and_counted(local: LocalSession) -> None:
    result = local.backtest(source("gap_up"), "AAPL,MSFT,GOOG", "2010-01-01", "2012-12-31")
    summary = result.summary
    assert summary["warmup_instances"] > 0
    assert (result.instances["date"] >= "2010-01-01").all()
    assert summary["total_instances"] == len(result.instances)
    trades = result.trades
    for _, trade in trades.iterrows():
        instance = result.instances.iloc[int(trade["instance_index"])]
        assert instance["ticker"] == trade["ticker"]
        assert instance["date"] == trade["signal_date"]


def test_strict_symbols_fails_before_the_strategy_runs(local: LocalSession) -> None:
    code = "def f(df):\n    print('ran')\n    return []\n"
    loose = local.backtest(code, "AAPL,APPL", "2011-01-01", "2011-12-31")
    assert loose.ok
    assert any("did you mean APPL → AAPL" in w for w in loose.warnings)
    strict = local.backtest(code, "AAPL,APPL", "2011-01-01", "2011-12-31", strict_symbols=True)
    assert strict.status == "error" and strict.data["error_type"] == "data"
    assert "APPL → AAPL" in str(strict.error) and "ran" not in strict.logs
    screen = local.screen(code, ["MSTF", "IBM"], strict_symbols=True)
    assert screen.status == "error" and "MSTF → MSFT" in str(screen.error)


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return warm_cli.run([*args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=180)  # fmt: skip


def test_run_command_prints_what_result_prints(
    redis_client: redis.Redis,
    worker_env: dict[str, str],
    settings: Settings,
    tmp_path: Path,
    burst: Burst,
) -> None:
    strategy = tmp_path / "gap_up.py"
    strategy.write_text(source("gap_up"))
    # No Redis at all: an address nothing listens on.
    env = {**worker_env, "REDIS_URL": "redis://127.0.0.1:1/0"}
    options = ["--symbols", "AAPL,MSFT", "--start", "2011-01-01", "--end", "2011-12-31",
               "--hold-days", "3", "--task-id", "cli-run"]  # fmt: skip
    done = cli(env, "run", "backtest", str(strategy), *options, "--json",
               "--html", str(tmp_path / "r.html"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    here = json.loads(done.stdout)
    assert (tmp_path / "r.html").stat().st_size > 100_000
    done = cli(worker_env, "submit", "backtest", str(strategy), *options)
    assert done.returncode == 0, done.stderr
    burst(settings)
    queued = json.loads(cli(worker_env, "result", "cli-run", "--json").stdout)
    assert comparable(here) == comparable(queued)
    table = cli(env, "run", "backtest", str(strategy), *options)
    shown = cli(worker_env, "result", "cli-run")
    assert table.returncode == 0 and shown.returncode == 0, table.stderr
    # The same tables, except for the header, the run's times and the timing line.
    assert _without_times(table.stdout) == _without_times(shown.stdout)


def _without_times(output: str) -> list[str]:
    lines = output.splitlines()[1:-1]
    return [line for line in lines if not line.startswith(("submitted ", "started ", "finished "))]


def test_run_sweep_and_screening_commands(worker_env: dict[str, str], tmp_path: Path) -> None:
    sweep = tmp_path / "sma.py"
    sweep.write_text(source("sma_params"))
    env = {**worker_env, "REDIS_URL": "redis://127.0.0.1:1/0"}
    done = cli(env, "run", "sweep", str(sweep), "--symbols", "AAPL", "--start", "2006-01-01",
               "--end", "2010-12-31", "--grid", "fast=5,10", "--grid", "slow=50,100",
               "--exit-on", "close", "--max-positions", "1", "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)["data"]
    assert data["execution_mode"] == "sweep" and data["total_combinations"] == 4
    assert data["best_result"]["summary"]["trade_model"]["exit_on"] == "close"
    universe = tmp_path / "universe.csv"
    universe.write_text("Symbol,Name\nAAPL,Apple\nIBM,IBM\n")
    screen = tmp_path / "screen.py"
    screen.write_text(source("momentum_screen"))
    done = cli(env, "run", "screening", str(screen), "--universe", f"@{universe}", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["data"]["universe_size"] == 2
    done = cli(env, "run", "screening", str(screen), "--universe", "all", "--limit", "10",
               "--json")  # fmt: skip
    assert json.loads(done.stdout)["data"]["universe_size"] == 5  # the sample's five tickers


def test_a_strategy_that_hangs_times_out_and_the_session_runs_on(local: LocalSession) -> None:
    hang = "def f(df):\n    while True:\n        pass\n"
    stuck = local.backtest(hang, "AAPL", "2011-01-01", "2011-12-31", timeout_seconds=1)
    assert stuck.status == "error" and stuck.data["error_type"] == "timeout", stuck.raw
    after = local.backtest(source("gap_up"), "AAPL", "2011-01-01", "2011-12-31")
    assert after.ok, after.raw


def _started(pid: int) -> str | None:
    """The process's start time (in clock ticks since boot), None once it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except OSError:
        return None


def _command(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:200]
    except OSError:
        return "?"


INTERRUPTED = """
import sys, strategyq
hang = "def f(df):\\n    while True:\\n        pass\\n"
try:
    print("running", flush=True)
    strategyq.backtest(hang, "AAPL", "2011-01-01", "2011-12-31", timeout_seconds=60)
except KeyboardInterrupt:
    print("interrupted", flush=True)
after = strategyq.backtest("def f(df):\\n    return []\\n", "AAPL", "2011-01-01", "2011-12-31")
print("after", after.status, flush=True)
sys.stdin.readline()
"""


@pytest.mark.parametrize("wait_s", [0.0, 1.5], ids=["while-starting", "while-running"])
def test_ctrl_c_during_a_local_run_stops_its_executor(
    worker_env: dict[str, str], wait_s: float
) -> None:
    import signal
    import time

    from tests.integration.test_demo import _alive, _descendants

    proc = subprocess.Popen([sys.executable, "-c", INTERRUPTED], env=worker_env, cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout is not None and proc.stdin is not None
    try:
        assert proc.stdout.readline().strip() == "running"
        deadline = time.monotonic() + 60
        # Starting: as soon as the executor exists; running: once its sandbox host has a
        # child, and a moment more, so the strategy is in its loop.
        wanted = 1 if wait_s == 0 else 3
        while len(_descendants(proc.pid)) < wanted and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(wait_s)
        first = {pid: _started(pid) for pid in _descendants(proc.pid)}
        assert len(first) >= wanted, first
        proc.send_signal(signal.SIGINT)
        assert proc.stdout.readline().strip() == "interrupted"
        assert proc.stdout.readline().strip() == "after completed"
        # The interrupted run's executor, host and child are gone; a fresh executor runs on.
        # A process is its pid and its start time: on a busy machine a pid can be reused.
        left = {pid: _command(pid) for pid, started in first.items() if _started(pid) == started}
        assert {pid: cmd for pid, cmd in left.items() if _alive(pid)} == {}
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proc.stdout.close()
        proc.stdin.close()
