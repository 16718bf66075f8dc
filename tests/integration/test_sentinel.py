"""Sentinel: a primary, a replica and three sentinels on loopback, and a failover mid-run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from strategyq import add_backtest_task, get_task_result
from strategyq.connection import connect, follow_primary
from strategyq.errors import ConnectionFailed
from strategyq.settings import Settings
from tests.integration.conftest import SpawnWorker, wait_until
from tests.integration.topology import SentinelSet

QUICK = (
    "import datetime\n"
    "def quick(df):\n"
    "    end = datetime.datetime.now() + datetime.timedelta(seconds=0.3)\n"
    "    while datetime.datetime.now() < end:\n"
    "        pass\n"
    "    return [{'ticker': 'AAPL', 'date': '2011-03-01'}]\n"
)


@pytest.fixture(scope="module")
def sentinels() -> Iterator[SentinelSet]:
    topology = SentinelSet().start()
    try:
        yield topology
    finally:
        topology.stop()


def _settings(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env({"STRATEGYQ_HOME": str(tmp_path), **env})


def test_redis_sentinel_url_reaches_the_primary(sentinels: SentinelSet, tmp_path: Path) -> None:
    client = connect(_settings(tmp_path, REDIS_URL=sentinels.url), decode_responses=True)
    client.set("sentinel-probe", "1")
    primary = redis.Redis(port=sentinels.master_port(), decode_responses=True)
    assert primary.get("sentinel-probe") == "1"
    assert primary.info("replication")["role"] == "master"


def test_redis_sentinels_env_reaches_the_primary(sentinels: SentinelSet, tmp_path: Path) -> None:
    nodes = ",".join(f"127.0.0.1:{p}" for p in sentinels.sentinel_ports)
    conf = _settings(tmp_path, REDIS_SENTINELS=nodes, REDIS_SENTINEL_MASTER=sentinels.MASTER)
    assert conf.redis.uses_sentinel and not conf.redis.embedded
    assert connect(conf).ping()


def test_unknown_master_name_is_one_clear_line(sentinels: SentinelSet, tmp_path: Path) -> None:
    url = sentinels.url.replace(f"/{sentinels.MASTER}/", "/nosuchmaster/")
    with pytest.raises(ConnectionFailed, match="REDIS_SENTINEL_MASTER") as info:
        connect(_settings(tmp_path, REDIS_URL=url))
    assert "Traceback" not in str(info.value)


def test_a_sentinel_given_as_a_plain_address_says_how_to_use_it(
    sentinels: SentinelSet, tmp_path: Path
) -> None:
    url = f"redis://127.0.0.1:{sentinels.sentinel_ports[0]}/0"
    with pytest.raises(ConnectionFailed, match=r"is a Redis Sentinel.*redis\+sentinel://"):
        connect(_settings(tmp_path, REDIS_URL=url))


@pytest.mark.slow
def test_a_move_is_told_after_a_reconnect_already_found_the_new_primary(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A topology of its own: Sentinel starts no second failover of a primary within twice
    # its failover timeout, which the module's failover test would then wait out.
    own = SentinelSet().start()
    try:
        client = connect(_settings(tmp_path, REDIS_URL=own.url))
        assert follow_primary(client) is False
        new_port = own.failover()
        # A connection made between two heartbeats asks the sentinels itself, and the
        # pool takes the new address without a word (once the sentinels it asks agree).
        pool = client.connection_pool
        wait_until(lambda: pool.get_master_address()[1] == new_port, timeout_s=30)
        with caplog.at_level("WARNING", logger="strategyq.connection"):
            assert follow_primary(client) is True
        assert "Sentinel names a new primary" in caplog.text
        assert follow_primary(client) is False
        client.close()
    finally:
        own.stop()


@pytest.mark.slow
def test_failover_mid_run_loses_nothing_and_writes_each_result_once(
    sentinels: SentinelSet, worker_env: dict[str, str], spawn_worker: SpawnWorker, tmp_path: Path
) -> None:
    client = connect(_settings(tmp_path, REDIS_URL=sentinels.url), decode_responses=True)
    client.flushdb()
    env = {**worker_env, "REDIS_URL": sentinels.url}
    worker = spawn_worker("sentinel-w1", env=env)
    worker.wait_for_log("started")
    ids = [f"fo-{i}" for i in range(30)]
    for tid in ids:
        add_backtest_task(client, tid, QUICK, ["AAPL"], "2011-01-01", "2011-06-30")
    wait_until(
        lambda: (
            sum((get_task_result(client, t) or {}).get("status") == "completed" for t in ids) >= 3
        ),
        timeout_s=60,
    )
    new_port = sentinels.failover()
    # Read the surviving data set itself: the demoted primary answers (and loses what
    # it was given) until the sentinels reconfigure it.
    new_primary = redis.Redis(port=new_port, decode_responses=True)

    def finished() -> bool:
        return all(
            (get_task_result(new_primary, t) or {}).get("status") == "completed" for t in ids
        )

    wait_until(finished, timeout_s=120, interval_s=0.2)
    assert new_primary.info("replication")["role"] == "master"
    worker.wait_for_log("Sentinel names a new primary")
    # One terminal write per task: each pushes one element onto its done list.
    assert {t: new_primary.llen(f"strategyq:done:{t}") for t in ids} == {t: 1 for t in ids}
    assert new_primary.llen("strategy_queue") == 0
    assert new_primary.llen("strategyq:dead_letter") == 0
    output = "".join(worker.output)
    assert "unexpected failure" not in output
