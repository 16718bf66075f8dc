"""A daily refresh while a worker answers tasks: the CronJob's import, run for real.

The worker reads the store the import writes. Every task must see one whole version
of it (all tickers at the old last session, or all at the new one: never a mix), and
the first task after an import must see the new session without a restart.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import redis

from strategyq import add_screening_task, wait_for_result
from tests import warm_cli
from tests.integration.pg import execute

TICKERS = 50
SESSIONS = 1500
LAST_SESSION = """
def last_session(df):
    last = df.groupby('ticker')['date'].max()
    return [{'ticker': t, 'score': 1.0, 'message': str(d)[:10]} for t, d in last.items()]
"""


def _import(url: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # The CronJob's command (deploy/kubernetes/base/import-cronjob.yaml).
    return warm_cli.run(
        ["data", "import", url,
         "--table", "bars", "--since", "auto", "--timezone", "America/New_York"],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def _last_sessions(client: redis.Redis, universe: list[str]) -> tuple[set[str], float]:
    task_id = f"refresh-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    add_screening_task(client, task_id, LAST_SESSION, universe, limit=len(universe))
    result = wait_for_result(client, task_id, timeout_s=120)
    assert result is not None and result["status"] == "completed", result
    ranked = result["data"]["ranked_results"]
    assert len(ranked) == len(universe)
    return {r["message"] for r in ranked}, started


def test_import_while_a_worker_answers_tasks(
    pg_url: str,
    tmp_path: Path,
    redis_url: str,
    redis_client: redis.Redis,
    worker_env: dict[str, str],
    spawn_worker: Any,
) -> None:
    execute(
        pg_url,
        "CREATE TABLE bars (ticker text, date date, open float8, high float8, low float8, "
        "close float8, volume float8)",
        f"INSERT INTO bars SELECT 'T' || lpad(s::text, 3, '0'), DATE '2015-01-01' + d, "
        f"10 + d * 0.01, 11 + d * 0.01, 9 + d * 0.01, 10.5 + d * 0.01, 1000 "
        f"FROM generate_series(1, {TICKERS}) s, generate_series(0, {SESSIONS - 1}) d",
    )
    home = tmp_path / "home"
    env = {**worker_env, "STRATEGYQ_HOME": str(home)}
    env = {k: v for k, v in env.items() if not k.startswith("PG")}
    first = _import(pg_url, env)
    assert first.returncode == 0, first.stderr
    worker = spawn_worker("refresh-worker", env={"STRATEGYQ_HOME": str(home)})
    universe = [f"T{s:03d}" for s in range(1, TICKERS + 1)]
    day = SESSIONS - 1
    seen, _ = _last_sessions(redis_client, universe)
    assert seen == {_date(day)}
    during = 0
    for _round in range(3):
        day += 1
        execute(
            pg_url,
            f"INSERT INTO bars SELECT ticker, date + 1, open, high, low, close, volume "
            f"FROM bars WHERE date = DATE '2015-01-01' + {day - 1}",
        )
        outcome: dict[str, subprocess.CompletedProcess[str]] = {}

        def run_import(into: dict[str, subprocess.CompletedProcess[str]] = outcome) -> None:
            into["p"] = _import(pg_url, env)

        runner = threading.Thread(target=run_import)
        import_started = time.monotonic()
        runner.start()
        while runner.is_alive():
            seen, started = _last_sessions(redis_client, universe)
            assert len(seen) == 1, f"one task saw two versions of the store: {sorted(seen)}"
            assert seen <= {_date(day - 1), _date(day)}
            during += started >= import_started and runner.is_alive()
        runner.join()
        assert outcome["p"].returncode == 0, outcome["p"].stderr
        assert f"{TICKERS * 2} rows of {TICKERS} ticker(s)" in outcome["p"].stdout
        seen, _ = _last_sessions(redis_client, universe)
        assert seen == {_date(day)}, "the next task sees the new session, no restart"
    assert during >= 1, "no task ran while an import was running"
    assert worker.proc is not None and worker.proc.poll() is None
    assert os.path.isdir(home / "data")


def _date(day: int) -> str:
    from datetime import date, timedelta

    return (date(2015, 1, 1) + timedelta(days=day)).isoformat()
