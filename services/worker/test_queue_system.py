"""The seed's queue-system check: `cd services/worker && python test_queue_system.py`.

It pushes the seed's two task types through the real queue — with the seed's
own producer functions, imported from ``worker`` — runs a worker in burst
mode until they are done, and checks every field of the seed's result
structure. It uses the same Redis as the worker (REDIS_URL / REDIS_HOST, or
the embedded server) and loads the sample market data when the store lacks it.
Its tasks go through a queue of its own, so a worker already serving
``strategy_queue`` (as after ``strategyq worker &``) does not take them first.
Exit code 0 means every check passed.
"""

from __future__ import annotations

import subprocess
import sys
import uuid

from worker import add_backtest_task, add_screening_task, get_task_result

from strategyq.cli.common import client as make_client
from strategyq.data import MarketData, load_sample
from strategyq.examples import source
from strategyq.settings import Settings

BACKTEST_FIELDS = {
    "success": bool,
    "execution_mode": str,
    "instances": list,
    "summary": dict,
    "performance_metrics": dict,
    "execution_time_ms": (int, float),
    "execution_time_seconds": (int, float),
    "worker_id": str,
    "completed_at": str,
}
SUMMARY_FIELDS = {
    "total_instances": int,
    "positive_signals": int,
    "date_range": list,
    "symbols_processed": int,
    "data_shape": list,
}
METRIC_FIELDS = ("total_return", "win_rate", "avg_return")
SCREENING_FIELDS = {
    "success": bool,
    "execution_mode": str,
    "ranked_results": list,
    "universe_size": int,
    "results_returned": int,
    "execution_time_seconds": (int, float),
    "worker_id": str,
    "completed_at": str,
}


def check(ok: bool, what: str, failures: list[str]) -> None:
    print(("PASS " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def check_fields(data: dict, fields: dict, where: str, failures: list[str]) -> None:
    for name, kind in fields.items():
        check(isinstance(data.get(name), kind), f"{where}.{name} is {kind}", failures)


def main() -> int:
    settings = Settings.from_env()
    market = MarketData(settings.data_dir)
    if "AAPL" not in market.tickers():
        load_sample(settings.data_dir)
    redis_client = make_client(settings)
    failures: list[str] = []
    backtest_id, screening_id = f"seed-bt-{uuid.uuid4()}", f"seed-sc-{uuid.uuid4()}"
    queue = f"strategy_queue:check-{uuid.uuid4().hex[:8]}"
    add_backtest_task(
        redis_client=redis_client,
        task_id=backtest_id,
        strategy_code=source("gap_up"),
        symbols=["AAPL", "MSFT", "GOOG"],
        start_date="2010-01-01T00:00:00",
        end_date="2012-12-31T23:59:59",
        queue=queue,
    )
    add_screening_task(
        redis_client=redis_client,
        task_id=screening_id,
        strategy_code=source("momentum_screen"),
        universe=["AAPL", "MSFT", "GOOG", "IBM", "FB"],
        limit=5,
        queue=queue,
    )
    check(get_task_result(redis_client, backtest_id)["status"] == "queued", "queued", failures)
    subprocess.run(
        [sys.executable, "-m", "strategyq", "worker", "--burst", "--metrics-port", "0",
         "--queue", queue],
        check=True,
    )  # fmt: skip
    backtest = get_task_result(redis_client, backtest_id) or {}
    check(backtest.get("status") == "completed", "backtest completed", failures)
    data = backtest.get("data", {})
    check_fields(data, BACKTEST_FIELDS, "backtest", failures)
    check_fields(data.get("summary", {}), SUMMARY_FIELDS, "backtest.summary", failures)
    for name in METRIC_FIELDS:
        value = data.get("performance_metrics", {}).get(name)
        check(isinstance(value, (int, float)), f"performance_metrics.{name} is a number", failures)
    screening = get_task_result(redis_client, screening_id) or {}
    check(screening.get("status") == "completed", "screening completed", failures)
    check_fields(screening.get("data", {}), SCREENING_FIELDS, "screening", failures)
    print(f"{len(failures)} failed" if failures else "all checks passed")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
