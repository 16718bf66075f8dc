"""The trade model through the queue: exits, warm-up history, a benchmark ticker, as_of snapping."""

from __future__ import annotations

import json
from pathlib import Path

import redis

from strategyq import add_backtest_task, add_screening_task, wait_for_result
from strategyq.examples import source
from strategyq.settings import Settings
from tests.integration.conftest import Burst
from tests.integration.test_cli import cli

CROSSOVER = """
def sma_cross(df):
    fast = df["sma_20"]
    slow = df["sma_50"]
    prev_fast = df.groupby("ticker")["sma_20"].shift(1)
    prev_slow = df.groupby("ticker")["sma_50"].shift(1)
    out = df[["ticker", "date"]].copy()
    out["entry"] = (fast > slow) & (prev_fast <= prev_slow)
    out["exit"] = (fast < slow) & (prev_fast >= prev_slow)
    out["first_row"] = str(df["date"].min())[:10]
    return out[out["entry"] | out["exit"]]
"""

SATURDAY_SCREEN = """
def screen(df):
    last = df[df["date"] == df["date"].max()]
    return [{"ticker": r.ticker, "score": float(r.close)} for r in last.itertuples()]
"""


def test_crossover_with_exits_history_and_a_benchmark(
    redis_client: redis.Redis, settings: Settings, burst: Burst
) -> None:
    add_backtest_task(
        redis_client, "bt-model", CROSSOVER, ["AAPL", "IBM"], "2011-01-01", "2012-12-31T23:59:59Z",
        benchmark="MSFT", lookback_sessions=60, commission_bps=5,
    )  # fmt: skip
    add_backtest_task(
        redis_client, "bt-nobench", CROSSOVER, ["AAPL"], "2011-01-01", "2011-12-31",
        benchmark="NOPE",
    )  # fmt: skip
    add_backtest_task(
        redis_client, "bt-dates", CROSSOVER, ["IBM"], "20110103", "2011-12-31T23:59:59+05:00"
    )
    add_backtest_task(
        redis_client, "bt-example", source("sma_cross"), ["AAPL", "IBM"], "2010-01-01",
        "2012-12-31", exit_on="close", trailing_stop_pct=8, benchmark="MSFT",
    )  # fmt: skip
    burst(settings)
    example = wait_for_result(redis_client, "bt-example", timeout_s=10)
    assert example is not None and example["status"] == "completed", example
    reasons = {t["exit_reason"] for t in example["data"]["trades"]}
    assert reasons <= {"exit_signal", "trailing_stop", "data_end"} and "exit_signal" in reasons
    assert example["data"]["performance_metrics"]["avg_holding_sessions"] > 5
    dates = wait_for_result(redis_client, "bt-dates", timeout_s=10)
    assert dates is not None and dates["status"] == "completed", dates
    # The range used, in UTC and in the documented form, not the input echoed.
    assert dates["data"]["summary"]["date_range"] == ["2011-01-03T00:00:00", "2011-12-31T18:59:59"]
    result = wait_for_result(redis_client, "bt-model", timeout_s=10)
    assert result is not None and result["status"] == "completed", result
    data = result["data"]
    summary = data["summary"]
    # The strategy saw 60 sessions before start_date: its first row is in October 2010.
    first_row = data["instances"][0]["first_row"]
    assert "2010-09-01" <= first_row < "2011-01-01"
    assert summary["lookback_sessions"] == 60
    assert summary["date_range"] == ["2011-01-01T00:00:00", "2012-12-31T23:59:59"]
    assert summary["trade_model"]["hold_days"] is None
    trades = data["trades"]
    assert trades and all(t["entry_date"] >= "2011-01-03" for t in trades)
    assert {t["exit_reason"] for t in trades} <= {"exit_signal", "data_end"}
    assert any(t["holding_sessions"] > 5 for t in trades)  # not one-day trades
    assert summary["signals_before_start"] >= 0
    assert summary["benchmark"] == {"type": "ticker", "ticker": "MSFT"}
    metrics = data["performance_metrics"]
    assert isinstance(metrics["beta"], float) and isinstance(metrics["correlation"], float)
    curve = data["benchmark_curve"]
    assert curve["dates"] == data["equity_curve"]["dates"]
    assert curve["values"][0] == 100_000.0

    missing = wait_for_result(redis_client, "bt-nobench", timeout_s=10)
    assert missing is not None and missing["status"] == "error"
    assert missing["data"]["error_type"] == "data"
    assert "benchmark NOPE is not in the store" in missing["data"]["error"]


def test_screen_as_of_a_saturday_uses_fridays_session(
    redis_client: redis.Redis, settings: Settings, burst: Burst
) -> None:
    # 2012-06-16 is a Saturday; the sample's last session before it is Friday 2012-06-15.
    add_screening_task(
        redis_client, "sc-saturday", SATURDAY_SCREEN, ["AAPL", "MSFT", "IBM"], 3,
        as_of="2012-06-16",
    )  # fmt: skip
    burst(settings)
    result = wait_for_result(redis_client, "sc-saturday", timeout_s=10)
    assert result is not None and result["status"] == "completed", result
    data = result["data"]
    assert data["as_of"] == "2012-06-15" and data["as_of_requested"] == "2012-06-16"
    assert data["stale_symbols"] == []
    assert data["results_returned"] == 3


def test_cli_flags_put_the_trade_model_on_the_wire(
    redis_client: redis.Redis, worker_env: dict[str, str], tmp_path: Path
) -> None:
    strategy = tmp_path / "cross.py"
    strategy.write_text(CROSSOVER)
    done = cli(worker_env, "submit", "backtest", str(strategy), "--symbols", "AAPL",
               "--start", "2011-01-01", "--end", "2011-12-31", "--exit-on", "close",
               "--trailing-stop-pct", "8", "--benchmark", "MSFT", "--lookback-sessions", "100",
               "--hold-days", "none", "--max-entries-per-ticker", "2", "--max-positions", "5",
               "--initial-capital", "50000", "--task-id", "cli-model")  # fmt: skip
    assert done.returncode == 0, done.stderr
    queued = [json.loads(raw) for raw in redis_client.lrange("strategy_queue", 0, -1)]
    (task,) = [t for t in queued if t["task_id"] == "cli-model"]
    args = task["args"]
    assert {k: args[k] for k in (
        "exit_on", "trailing_stop_pct", "benchmark", "lookback_sessions", "hold_days",
        "max_entries_per_ticker", "max_positions", "initial_capital",
    )} == {
        "exit_on": "close", "trailing_stop_pct": 8.0, "benchmark": "MSFT",
        "lookback_sessions": 100, "hold_days": None, "max_entries_per_ticker": 2,
        "max_positions": 5, "initial_capital": 50000.0,
    }  # fmt: skip
    refused = cli(worker_env, "submit", "backtest", str(strategy), "--symbols", "AAPL",
                  "--start", "2011-01-01", "--end", "2011-12-31", "--hold-days", "-5",
                  "--task-id", "cli-bad")  # fmt: skip
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "hold_days=-5 is out of range; use 1 to 10000" in refused.stderr
    assert not [
        raw for raw in redis_client.lrange("strategy_queue", 0, -1) if "cli-bad" in str(raw)
    ]
