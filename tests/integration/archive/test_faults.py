"""The archiver under faults: downtime, kill -9, a race, retention, a database outage,
evictions, corrupt records and a newer schema; real processes, SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import threading
from typing import Any

import httpx
import orjson
import pytest
import redis

from strategyq import add_backtest_task
from strategyq.archive.archiver import Archiver, ArchiverConfig
from strategyq.archive.record import build
from strategyq.archive.store import Archive, RunFilter, now_ms
from strategyq.errors import ArchiveSchemaNewer
from strategyq.examples import source
from strategyq.queue import archive_feed, keys
from strategyq.settings import Settings
from tests.integration.archive.helpers import (
    ArchiverProcess,
    Proxy,
    archive_env,
    put_runs,
    wait_for,
)
from tests.integration.conftest import Burst
from tests.integration.pg import SERVER, execute

SMA = source("sma_cross")


def ids_in(url: str) -> list[str]:
    archive = Archive.open(url)
    try:
        return [str(r[0]) for r in archive.db.query("SELECT task_id FROM runs ORDER BY task_id")]
    finally:
        archive.close()


def count(url: str) -> int:
    try:
        archive = Archive.open(url)
    except Exception:  # the first archiver has not created it yet
        return 0
    try:
        return archive.count()
    finally:
        archive.close()


def metric(port: int, name: str) -> float:
    body = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    for line in body.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def test_catch_up_after_the_archiver_was_down(
    redis_client: redis.Redis,
    settings: Settings,
    worker_env: dict[str, str],
    archive_url: str,
    burst: Burst,
) -> None:
    env = archive_env(worker_env, archive_url)
    # Runs that ended before any archive was on come from the recent-task index.
    add_backtest_task(redis_client, "before", SMA, ["AAPL"], "2010-01-01", "2010-12-31")
    burst(settings)
    assert not archive_feed.is_on(redis_client)
    first = ArchiverProcess(env, "--once").start()
    assert first.wait() == 0, first.text
    assert ids_in(archive_url) == ["before"]
    assert archive_feed.is_on(redis_client)  # the archiver switched the feed on
    # The archiver is down while three more runs end.
    for i in range(3):
        add_backtest_task(redis_client, f"down-{i}", SMA, ["AAPL"], "2010-01-01", "2010-12-31",
                          tags=["catch-up"])  # fmt: skip
    burst(settings)
    assert redis_client.xlen(keys.ARCHIVE_FEED) == 3
    again = ArchiverProcess(env, "--once").start()
    assert again.wait() == 0, again.text
    assert "archived 3 runs" in again.text
    assert ids_in(archive_url) == ["before", "down-0", "down-1", "down-2"]
    # Redis is as the workers left it: the archiver only reads.
    assert redis_client.xlen(keys.ARCHIVE_FEED) == 3
    assert redis_client.exists(keys.result("down-0"))


@pytest.mark.slow
def test_kill_9_mid_batch_loses_and_duplicates_nothing(
    redis_client: redis.Redis, worker_env: dict[str, str], archive_url: str
) -> None:
    total = 3000
    ids = [f"k{i:05d}" for i in range(total)]
    archive_feed.switch_on(redis_client)
    put_runs(redis_client, ids)
    env = archive_env(worker_env, archive_url, STRATEGYQ_ARCHIVE_BATCH="40")
    seen = []
    for _ in range(3):
        proc = ArchiverProcess(env).start()
        start = count(archive_url)
        # Kill it while it is copying: some batches in, many to go.
        wait_for(lambda s=start: count(archive_url) > s + 80, timeout_s=120, interval_s=0.01)
        proc.kill()
        seen.append(count(archive_url))
    assert seen == sorted(seen) and seen[-1] < total, seen
    last = ArchiverProcess(env, "--once").start()
    assert last.wait() == 0, last.text
    assert ids_in(archive_url) == ids  # every run, each once
    archive = Archive.open(archive_url)
    try:
        for task_id in (ids[0], ids[1234], ids[-1]):
            assert archive.result(task_id) == orjson.loads(redis_client.get(keys.result(task_id)))
        assert archive.cursor() == redis_client.xrevrange(keys.ARCHIVE_FEED, count=1)[0][0]
    finally:
        archive.close()


@pytest.mark.slow
def test_two_archivers_race_and_write_each_run_once(
    redis_client: redis.Redis, worker_env: dict[str, str], archive_url: str
) -> None:
    total = 1500
    ids = [f"race{i:05d}" for i in range(total)]
    archive_feed.switch_on(redis_client)
    count(archive_url)  # the schema, so the two do not also race to create it
    env = archive_env(worker_env, archive_url, STRATEGYQ_ARCHIVE_BATCH="25")
    a, b = ArchiverProcess(env).start(), ArchiverProcess(env).start()
    try:
        ports = a.port(), b.port()
        put_runs(redis_client, ids)
        wait_for(lambda: count(archive_url) == total, timeout_s=120, interval_s=0.1)
        wait_for(lambda: all(metric(p, "strategyq_archive_lag_seconds") == 0 for p in ports))
        written = [metric(p, "strategyq_archive_rows_written_total") for p in ports]
        assert sum(written) == total, written  # each row counted by the one that wrote it
    finally:
        assert a.terminate() == 0 and b.terminate() == 0
    assert ids_in(archive_url) == ids


def test_retention_by_age_and_by_count_runs_in_the_background(
    redis_client: redis.Redis, archive_url: str
) -> None:
    day = 86_400_000
    now = now_ms()

    def run(task_id: str, age_days: float) -> Any:
        record = {"status": "completed", "data": {"execution_mode": "backtest"}}
        return build(task_id, orjson.dumps(record), None, finished_ms=now - int(age_days * day))

    archive = Archive.open(archive_url)
    try:
        archive.write([run(f"old{i}", 40 + i) for i in range(3)] +
                      [run(f"new{i}", i / 10) for i in range(6)])  # fmt: skip
        assert archive.prune(max_age_days=30) == 3
        assert archive.prune(max_runs=4) == 2
        assert sorted(archive.existing([f"new{i}" for i in range(6)])) == [
            "new0", "new1", "new2", "new3"]  # fmt: skip
    finally:
        archive.close()
    # The archiver's own background pass.
    config = ArchiverConfig(url=archive_url, retention_runs=2, prune_interval_s=0.1, block_ms=100)
    arch = Archiver(redis_client, config)
    thread = threading.Thread(target=arch.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: count(archive_url) == 2, timeout_s=30)
    finally:
        arch.stop()
        thread.join(10)
    assert ids_in(archive_url) == ["new0", "new1"]


def test_evicted_expired_corrupt_and_foreign_records_are_logged_and_skipped(
    redis_client: redis.Redis, archive_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    archive_feed.switch_on(redis_client)
    put_runs(redis_client, ["ok", "evicted", "corrupt", "running"])
    redis_client.delete(keys.result("evicted"))  # what an eviction does
    redis_client.set(keys.result("corrupt"), b"\x00not json")
    redis_client.set(keys.result("running"), orjson.dumps({"status": "running", "data": {}}))
    redis_client.xadd(keys.ARCHIVE_FEED, {"something": "else"})
    old = now_ms() - 3 * 3600 * 1000
    redis_client.xadd(keys.ARCHIVE_FEED, {"id": "expired", "status": "completed",
                                          "type": "backtest", "ms": old})  # fmt: skip
    put_runs(redis_client, ["after"])
    arch = Archiver(redis_client, ArchiverConfig(url=archive_url, result_ttl_s=3600))
    try:
        with caplog.at_level(logging.WARNING, logger="strategyq.archive.archiver"):
            archive_feed.switch_on(redis_client)
            arch._start()
            while arch.step():
                pass
    finally:
        arch.db.close()
    assert ids_in(archive_url) == ["after", "ok"]
    text = caplog.text
    assert "run evicted (ended" in text and "was evicted from Redis before it was archived" in text
    assert "run expired (ended" in text and "expired (the archive was down past" in text
    assert "skipping task_result:corrupt: the result is not JSON" in text
    assert "skipping task_result:running: the result's status is 'running'" in text
    assert "not a strategyq entry" in text
    archive = Archive.open(archive_url)
    try:
        missed = {(t, reason) for t, reason, _ in archive.missed()}
    finally:
        archive.close()
    assert missed == {("evicted", "evicted"), ("expired", "expired")}


def test_a_schema_newer_than_the_code_is_refused_with_the_fix(
    archive_url: str, worker_env: dict[str, str]
) -> None:
    archive = Archive.open(archive_url)
    try:
        with archive.db.transaction() as cur:
            archive.db.execute(cur, "INSERT INTO schema_version (version) VALUES (?)", (99,))
    finally:
        archive.close()
    with pytest.raises(ArchiveSchemaNewer, match="upgrade strategyq"):
        Archive.open(archive_url)
    proc = ArchiverProcess(archive_env(worker_env, archive_url), "--once").start()
    assert proc.wait() == 1
    assert "has schema version 99, and this strategyq knows versions up to 1" in proc.text


@pytest.mark.slow
def test_database_down_retries_fails_readiness_and_leaves_redis_alone(
    redis_client: redis.Redis, worker_env: dict[str, str], pg_module_db: str | None
) -> None:
    # A database server that goes down is PostgreSQL's case (SQLite is a file).
    assert pg_module_db is not None, "PostgreSQL is needed for this test"
    execute(pg_module_db, "DROP SCHEMA public CASCADE", "CREATE SCHEMA public")
    archive_url = pg_module_db
    count(archive_url)
    proxy = Proxy(("127.0.0.1", 5432))
    proxied = archive_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    assert proxied != archive_url and SERVER
    archive_feed.switch_on(redis_client)
    put_runs(redis_client, ["a1", "a2"])
    proc = ArchiverProcess(archive_env(worker_env, proxied)).start()
    try:
        port = proc.port()
        wait_for(lambda: "cannot be reached" in proc.text, timeout_s=30)
        assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10).status_code == 503
        assert redis_client.xlen(keys.ARCHIVE_FEED) == 2 and redis_client.exists(keys.result("a1"))
        proxy.up()
        wait_for(lambda: count(archive_url) == 2, timeout_s=60)
        wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10).status_code
                 == 200)  # fmt: skip
        # Down again in the middle of running: the next runs wait, and then arrive.
        proxy.down()
        put_runs(redis_client, ["b1", "b2", "b3"])
        wait_for(lambda: "failed" in proc.text.split("archiving into")[-1], timeout_s=60)
        wait_for(lambda: httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10).status_code
                 == 503)  # fmt: skip
        proxy.up()
        wait_for(lambda: count(archive_url) == 5, timeout_s=90)
    finally:
        proxy.down()
        proc.kill()
    page = Archive.open(archive_url)
    try:
        assert len(page.search(RunFilter(name="bulk")).runs) == 5
    finally:
        page.close()


def test_catch_up_reads_the_whole_recent_index_page_by_page(
    redis_client: redis.Redis, archive_url: str
) -> None:
    ids = [f"idx{i:05d}" for i in range(1234)]
    put_runs(redis_client, ids)
    redis_client.delete(keys.ARCHIVE_FEED)  # ended while no archive was on: index only
    arch = Archiver(redis_client, ArchiverConfig(url=archive_url, batch=100))
    try:
        archive_feed.switch_on(redis_client)
        arch._start()
    finally:
        arch.db.close()
    assert arch.caught_up == len(ids)
    assert ids_in(archive_url) == ids
