"""The archiver against a real Valkey and a real database (SQLite, PostgreSQL)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
import pytest
import redis

from strategyq import add_backtest_task, add_screening_task, add_sweep_task, cancel_task
from strategyq.archive import load_result, runs
from strategyq.archive.archiver import Archiver, ArchiverConfig
from strategyq.archive.record import fingerprint
from strategyq.archive.store import Archive, RunFilter
from strategyq.examples import source
from strategyq.queue import archive_feed, keys
from strategyq.settings import Settings
from tests.integration.conftest import Burst

SMA = source("sma_cross")
PARAMS = source("sma_params")
GAP = source("gap_up")
SYMBOLS = ["AAPL", "MSFT"]


OPENED: list[Archiver] = []


@pytest.fixture(autouse=True)
def _close_archivers() -> Any:
    yield
    while OPENED:
        OPENED.pop().db.close()


def archiver(client: redis.Redis, url: str, **changes: Any) -> Archiver:
    """An archiver started as ``strategyq archive`` starts it, stepped by the test."""
    config = replace(ArchiverConfig(url=url, block_ms=0), **changes)
    arch = Archiver(client, config)
    OPENED.append(arch)
    archive_feed.switch_on(client, config.feed_max)
    arch._start()
    return arch


def drain(arch: Archiver) -> int:
    total = 0
    while True:
        n = arch.step()
        total += n
        if n == 0 and archive_feed.feed_oldest_after(arch.client, arch.cursor) is None:
            return total


def rows(url: str) -> dict[str, dict[str, Any]]:
    archive = Archive.open(url)
    try:
        page = archive.search(RunFilter(limit=1000))
        return {r["task_id"]: r for r in page.runs}
    finally:
        archive.close()


def test_every_task_type_is_archived_once(
    redis_client: redis.Redis, settings: Settings, archive_url: str, burst: Burst
) -> None:
    archive_feed.switch_on(redis_client)
    add_backtest_task(redis_client, "bt", SMA, SYMBOLS, "2010-01-01", "2011-12-31",
                      name="sma cross", tags=["trend", "daily"])  # fmt: skip
    add_screening_task(redis_client, "scr", GAP, SYMBOLS, 5, name="gaps")
    add_sweep_task(redis_client, "sw", PARAMS, SYMBOLS, "2008-01-01", "2010-12-31",
                   {"fast": [5, 10], "slow": [50, 100]}, name="sma grid")  # fmt: skip
    add_backtest_task(redis_client, "bad", "def f(df):\n    return 1/0\n", SYMBOLS,
                      "2010-01-01", "2010-12-31")  # fmt: skip
    add_backtest_task(redis_client, "gone", SMA, SYMBOLS, "2010-01-01", "2010-12-31")
    cancel_task(redis_client, "gone")
    burst(settings)
    arch = archiver(redis_client, archive_url)
    assert arch.caught_up + drain(arch) == 5
    assert drain(arch) == 0
    arch2 = archiver(redis_client, archive_url)  # a second archiver from the start
    arch2.cursor = "0-0"
    assert drain(arch2) == 0
    got = rows(archive_url)
    assert set(got) == {"bt", "scr", "sw", "bad", "gone"}
    assert got["bt"]["task_type"] == "backtest" and got["bt"]["status"] == "completed"
    assert got["bt"]["name"] == "sma cross" and got["bt"]["tags"] == ["daily", "trend"]
    assert got["bt"]["fingerprint"] == fingerprint(SMA)
    assert got["bt"]["symbols"] == SYMBOLS
    held = orjson.loads(redis_client.get(keys.result("bt")))
    assert (
        got["bt"]["metrics"]["sharpe_ratio"] == held["data"]["performance_metrics"]["sharpe_ratio"]
    )
    assert load_result("bt", url=archive_url) == held
    assert got["scr"]["task_type"] == "screening" and got["scr"]["name"] == "gaps"
    assert got["sw"]["task_type"] == "sweep" and got["sw"]["status"] == "completed"
    sweep = orjson.loads(redis_client.get(keys.result("sw")))
    assert got["sw"]["metrics"]["sharpe_ratio"] == sweep["data"]["best"]["metrics"]["sharpe_ratio"]
    assert got["bad"]["status"] == "error" and got["bad"]["error_type"]
    assert got["gone"]["status"] == "cancelled"
    archive = Archive.open(archive_url)
    try:
        combos = archive.db.query(
            "SELECT rank, params FROM sweep_combinations WHERE task_id = ? ORDER BY rank", ("sw",)
        )
        assert [r[0] for r in combos] == [1, 2, 3, 4]
        assert {orjson.loads(r[1])["fast"] for r in combos} == {5, 10}
        code = archive.run("bt")["strategy_code"]
        assert code == SMA
    finally:
        archive.close()
    frame = runs(url=archive_url)
    assert len(frame) == 5 and "sharpe_ratio" in frame.columns


def test_runs_that_ended_with_the_archive_off_keep_their_args_name_tags_and_type(
    redis_client: redis.Redis, settings: Settings, archive_url: str, burst: Burst
) -> None:
    # No archive on: no feed, and no copy of the messages for an archiver.
    assert not archive_feed.is_on(redis_client)
    add_backtest_task(redis_client, "off-bt", SMA, SYMBOLS, "2010-01-01", "2011-12-31",
                      name="sma cross", tags=["trend", "daily"])  # fmt: skip
    add_backtest_task(redis_client, "off-bad", "def f(df):\n    return 1/0\n", SYMBOLS,
                      "2010-01-01", "2010-12-31", name="broken")  # fmt: skip
    add_sweep_task(redis_client, "off-sw", PARAMS, SYMBOLS, "2008-01-01", "2010-12-31",
                   {"fast": [5, 10], "slow": [50]}, name="grid", tags=["sweep"])  # fmt: skip
    burst(settings)
    assert not redis_client.exists(keys.task("off-bt"))
    arch = archiver(redis_client, archive_url)  # catches up from the recent-task index
    assert arch.caught_up == 3
    got = rows(archive_url)
    assert got["off-bt"]["name"] == "sma cross" and got["off-bt"]["tags"] == ["daily", "trend"]
    assert got["off-bt"]["fingerprint"] == fingerprint(SMA)
    assert got["off-bt"]["symbols"] == SYMBOLS
    # An error's record names no execution mode: its type comes from the recent index.
    assert got["off-bad"]["task_type"] == "backtest" and got["off-bad"]["name"] == "broken"
    assert got["off-sw"]["task_type"] == "sweep" and got["off-sw"]["tags"] == ["sweep"]
    archive = Archive.open(archive_url)
    try:
        run = archive.run("off-bt")
        assert run["strategy_code"] == SMA
        assert run["args"]["start_date"] == "2010-01-01" and run["args"]["name"] == "sma cross"
        assert archive.run("off-sw")["args"]["param_grid"] == {"fast": [5, 10], "slow": [50]}
    finally:
        archive.close()
    assert len(runs(url=archive_url, name="sma cross", tag="trend")) == 1
