"""The CLI and the seed's shims, as subprocesses, against the test server."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from strategyq import add_backtest_task, get_task_result
from strategyq.examples import source
from strategyq.queue import TaskQueue, keys
from strategyq.settings import Settings
from tests import warm_cli
from tests.cli_inprocess import strategyq
from tests.integration.conftest import (
    Burst,
    SpawnWorker,
    WorkerProcess,
    wait_for_status,
    wait_until,
)

ROOT = Path(__file__).resolve().parents[2]
SHIMS = ROOT / "services" / "worker"


def cli(
    env: dict[str, str], *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return warm_cli.run(
        [*args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="class")
def default_worker(module_worker_env: dict[str, str]) -> Iterator[WorkerProcess]:
    """A worker process on the default queue with the suite's settings, for the tests of
    ``TestWithAWorkerRunning`` (stopped after them: the tests further down need none)."""
    proc = WorkerProcess(module_worker_env, "cli-1").start()
    try:
        yield proc
    finally:
        proc.stop()


class TestWithAWorkerRunning:
    """The tests that need a worker serving the default queue, and nothing else of it,
    share one: a worker and its executor chain take seconds of CPU to start."""

    def test_submit_wait_json_and_tables(
        self,
        redis_client: redis.Redis,
        worker_env: dict[str, str],
        default_worker: WorkerProcess,
        tmp_path: Path,
    ) -> None:
        strategy = tmp_path / "gap_up.py"
        strategy.write_text(source("gap_up"))
        screen = tmp_path / "screen.py"
        screen.write_text(source("momentum_screen"))
        done = cli(worker_env, "submit", "backtest", str(strategy), "--symbols", "AAPL,MSFT",
                   "--start", "2010-01-01", "--end", "2012-12-31", "--hold-days", "2",
                   "--wait", "--json", "--task-id", "cli-bt")  # fmt: skip
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        assert result["status"] == "completed"
        assert result["data"]["summary"]["symbols_processed"] == 2
        shown = cli(worker_env, "submit", "screening", str(screen), "--universe", "AAPL,MSFT,IBM",
                    "--limit", "2", "--wait")  # fmt: skip
        assert shown.returncode == 0, shown.stderr
        assert "ranked results" in shown.stdout
        again = cli(worker_env, "result", "cli-bt")
        assert again.returncode == 0 and "all metrics" in again.stdout
        total_return = result["data"]["performance_metrics"]["total_return"]
        assert f"Total return {total_return * 100:,.2f} %" in again.stdout
        assert "total_return" not in again.stdout
        # A run time reads as "343 ms" or "24.0 s", never as fractional milliseconds.
        assert re.search(r"in (\d+ ms|\d+\.\d s|\d+ min \d\d s)\n", again.stdout), again.stdout
        assert not re.search(r"\d\.\d+ ms", again.stdout)

    def test_queue_system_check_passes_with_a_worker_already_running(
        self, redis_client: redis.Redis, worker_env: dict[str, str], default_worker: WorkerProcess
    ) -> None:
        # The seed's check script queues on a queue of its own and runs its own burst worker,
        # so a worker serving the default queue changes nothing it checks: this one run, with
        # such a worker there, is the check with and without one.
        default_worker.wait_for_log("started: queue")
        checked = subprocess.run(
            [sys.executable, "test_queue_system.py"],
            cwd=SHIMS, env=worker_env, capture_output=True, text=True, timeout=180,
        )  # fmt: skip
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "PASS queued" in checked.stdout
        assert "all checks passed" in checked.stdout


def test_user_errors_are_one_line(worker_env: dict[str, str], tmp_path: Path) -> None:
    # The two refused before any connection run in this process (an exception escaping
    # the entry point would fail the test here, as a traceback would there); the two that
    # need the server run the real executable.
    missing = strategyq("submit", "backtest", str(tmp_path / "nope.py"), "--symbols", "AAPL",
                        "--start", "2010-01-01", "--end", "2011-01-01", env=worker_env)  # fmt: skip
    assert missing.returncode == 1
    assert "cannot read" in missing.stderr and "Traceback" not in missing.stderr
    strategy = tmp_path / "s.py"
    strategy.write_text("def s(df):\n    return []\n")
    invalid = strategyq("submit", "backtest", str(strategy), "--symbols", "AAPL",
                        "--start", "2012-01-01", "--end", "2011-01-01", env=worker_env)  # fmt: skip
    assert invalid.returncode == 1
    assert "after" in invalid.stderr and "Traceback" not in invalid.stderr
    unknown = cli(worker_env, "result", "no-such-task")
    assert unknown.returncode == 1 and "no result" in unknown.stderr
    unreachable = cli({**worker_env, "REDIS_URL": "redis://127.0.0.1:1/0"}, "queue")
    assert unreachable.returncode == 1
    assert len(unreachable.stderr.strip().splitlines()) == 1, unreachable.stderr


def test_submit_reports_a_syntax_error_at_once_and_queues_nothing(
    redis_client: redis.Redis, worker_env: dict[str, str], tmp_path: Path
) -> None:
    strategy = tmp_path / "broken.py"
    strategy.write_text("def strategy(df):\n    return [x for x in\n")
    # In this process: the check refuses it before any connection.
    done = strategyq("submit", "backtest", str(strategy), "--symbols", "AAPL",
                     "--start", "2010-01-01", "--end", "2011-01-01", env=worker_env)  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert "syntax error on line 2" in done.stderr and "^" in done.stderr, done.stderr
    assert "Security validation" not in done.stderr and "Traceback" not in done.stderr
    assert redis_client.llen("strategy_queue") == 0


def test_cancel_and_queue_views(
    redis_client: redis.Redis, worker_env: dict[str, str], spawn_worker: SpawnWorker
) -> None:
    add_backtest_task(
        redis_client, "queued-1", source("gap_up"), ["AAPL"], "2011-01-01", "2011-12-31"
    )
    cancelled = cli(worker_env, "cancel", "queued-1")
    assert cancelled.returncode == 0 and "cancelled before it started" in cancelled.stdout

    slow = (
        "import datetime\ndef slow(df):\n"
        "    end = datetime.datetime.now() + datetime.timedelta(seconds=60)\n"
        "    while datetime.datetime.now() < end:\n        pass\n    return []\n"
    )
    add_backtest_task(redis_client, "busy", slow, ["AAPL"], "2011-01-01", "2011-12-31")
    spawn_worker("q-1")
    wait_until(lambda: (get_task_result(redis_client, "busy") or {}).get("status") == "running")
    view = json.loads(cli(worker_env, "queue", "--json").stdout)
    assert view["workers_alive"] == 1 and view["in_flight"] == 1
    (worker,) = view["workers"]
    assert worker["worker_id"] == "q-1" and worker["alive"] is True
    assert worker["in_flight"][0]["task_id"] == "busy"
    assert worker["in_flight"][0]["attempts"] == 1
    table = cli(worker_env, "queue")
    assert "q-1" in table.stdout and "busy" in table.stdout
    stopping = cli(worker_env, "cancel", "busy")
    assert "cancel requested" in stopping.stdout
    wait_for_status(redis_client, "busy", "cancelled")


def test_dead_letters_list_retry_purge(
    redis_client: redis.Redis, worker_env: dict[str, str], settings: Settings, burst: Burst
) -> None:
    # A task whose worker died at its last allowed attempt: the reaper dead-letters it.
    raw = json.dumps({"task_id": "dlq-1", "task_type": "backtest", "args": {
        "strategy_code": source("gap_up"), "symbols": ["AAPL"],
        "start_date": "2011-01-01", "end_date": "2011-12-31"}})  # fmt: skip
    redis_client.lpush(keys.processing("ghost"), raw)
    redis_client.sadd(keys.WORKERS, "ghost")
    redis_client.set(keys.attempts("dlq-1"), settings.max_attempts)
    redis_client.lpush(keys.DEAD_LETTER, json.dumps({"raw": "garbage", "reason": "malformed"}))
    TaskQueue(redis_client, result_ttl_s=settings.result_ttl_s).reap_dead_workers(
        "reaper", settings.max_attempts, lock_ms=2000
    )
    assert (get_task_result(redis_client, "dlq-1") or {})["data"]["error_type"] == "worker_lost"

    listed = json.loads(cli(worker_env, "dlq", "list", "--json").stdout)
    assert [e.get("task_id") for e in listed] == ["dlq-1", None]
    assert "worker_lost" in cli(worker_env, "dlq", "list").stdout
    retried = cli(worker_env, "dlq", "retry")
    assert retried.returncode == 0 and "1 task(s) back" in retried.stdout
    assert (get_task_result(redis_client, "dlq-1") or {})["status"] == "queued"
    burst(settings)
    assert (get_task_result(redis_client, "dlq-1") or {})["status"] == "completed"
    purged = cli(worker_env, "dlq", "purge", "--yes")
    assert purged.returncode == 0 and redis_client.llen(keys.DEAD_LETTER) == 0


def test_seed_shims_work_unchanged(redis_client: redis.Redis, worker_env: dict[str, str]) -> None:
    # The producer functions the seed imports (`from worker import ...`), from the shim's
    # own file; worker.py runs below as a script, test_queue_system.py in the next test.
    spec = importlib.util.spec_from_file_location("seed_worker_shim", SHIMS / "worker.py")
    assert spec is not None and spec.loader is not None
    shim = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(shim)
    for name in ("add_backtest_task", "add_screening_task", "get_task_result"):
        assert callable(getattr(shim, name)), name
    add_backtest_task(
        redis_client, "shim-1", source("gap_up"), ["AAPL"], "2011-01-01", "2011-12-31"
    )
    ran = subprocess.run(
        [sys.executable, "worker.py", "--burst", "--metrics-port", "0"],
        cwd=SHIMS, env=worker_env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    assert (get_task_result(redis_client, "shim-1") or {})["status"] == "completed"


def test_worker_shim_outside_the_venv_says_what_to_do(worker_env: dict[str, str]) -> None:
    # -S: no site-packages, and no PYTHONPATH (a checkout's src/ on it would give the
    # package without its dependencies), as with a system Python that lacks the package.
    env = {k: v for k, v in worker_env.items() if k != "PYTHONPATH"}
    ran = subprocess.run(
        [sys.executable, "-S", "worker.py"],
        cwd=SHIMS, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert ran.returncode != 0
    assert "ModuleNotFoundError" not in ran.stderr
    assert "strategyq is not installed" in ran.stderr and "make install" in ran.stderr


def test_submit_wait_timeout_on_a_queued_task_exits_non_zero(
    redis_client: redis.Redis, worker_env: dict[str, str], tmp_path: Path
) -> None:
    strategy = tmp_path / "gap_up.py"
    strategy.write_text(source("gap_up"))
    for extra in ((), ("--json",)):
        done = cli(worker_env, "submit", "backtest", str(strategy), "--symbols", "AAPL",
                   "--start", "2011-01-01", "--end", "2011-12-31", "--wait", "--timeout", "1",
                   *extra)  # fmt: skip
        assert done.returncode == 2, (done.stdout, done.stderr)
        assert "did not finish within 1 s" in done.stderr
        assert "no worker is alive" in done.stderr
        assert "unknown id" not in done.stderr and "{'" not in done.stdout
        if extra:
            assert json.loads(done.stdout)["status"] == "queued"


def test_every_task_arg_has_a_cli_option(
    redis_client: redis.Redis, worker_env: dict[str, str], tmp_path: Path
) -> None:
    from strategyq.protocol.args import args_for
    from strategyq.protocol.envelope import TaskType

    for task_type in TaskType:
        # Help in this process (the submit below runs the real executable). Wide enough
        # that rich does not ellipsize long option names.
        shown = strategyq("submit", task_type.value, "--help",
                          env={**worker_env, "COLUMNS": "250"}).stdout  # fmt: skip
        for arg in args_for(task_type):
            if arg.name != "strategy_code":
                assert arg.option in shown, (task_type, arg.option)
    strategy = tmp_path / "gap_up.py"
    strategy.write_text(source("gap_up"))
    done = cli(worker_env, "submit", "backtest", str(strategy), "--symbols", "AAPL,MSFT",
               "--start", "2011-01-01", "--end", "2011-12-31", "--max-positions", "3",
               "--initial-capital", "5000", "--no-adjusted", "--hold-days", "none",
               "--task-id", "opts")  # fmt: skip
    assert done.returncode == 0, done.stderr
    (raw,) = redis_client.lrange("strategy_queue", 0, -1)
    args = json.loads(raw)["args"]
    assert (args["max_positions"], args["initial_capital"], args["adjusted"]) == (3, 5000.0, False)
    assert args["symbols"] == ["AAPL", "MSFT"]
    assert "hold_days" in args and args["hold_days"] is None  # 'none' is the wire's null


def test_result_of_an_unfinished_task_is_json_or_a_table(
    redis_client: redis.Redis, worker_env: dict[str, str]
) -> None:
    add_backtest_task(redis_client, "pending", source("gap_up"), ["AAPL"], "2011-01-01",
                      "2011-12-31")  # fmt: skip
    as_json = cli(worker_env, "result", "pending", "--json")
    assert as_json.returncode == 0
    assert json.loads(as_json.stdout)["status"] == "queued"
    table = cli(worker_env, "result", "pending")
    assert table.returncode == 0 and "queued_at" in table.stdout
    assert "{'" not in table.stdout


def test_dlq_retry_says_why_it_skipped_entries(
    redis_client: redis.Redis, worker_env: dict[str, str]
) -> None:
    entry = {"raw": "garbage", "reason": "malformed", "error": "task message is not valid JSON",
             "at": "2024-01-01T00:00:00Z"}  # fmt: skip
    redis_client.lpush(keys.DEAD_LETTER, json.dumps(entry))
    retried = cli(worker_env, "dlq", "retry")
    assert retried.returncode == 0
    assert "0 task(s) back" in retried.stdout
    assert "skipped a message dead-lettered at 2024-01-01T00:00:00Z" in retried.stdout
    assert "names no task_id" in retried.stdout
    one = cli(worker_env, "dlq", "retry", "nope")
    assert "no dead-letter entry has this task_id" in one.stdout
