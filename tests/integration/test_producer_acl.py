"""The producer ACL of docs/operations.md, on a real server with a real ACL user.

Connected as that user, a client submits tasks (a raw LPUSH, as the seed's Go
backend does) and reads results, but cannot change another task's record,
cannot write the sweeps' keys, and cannot have a chunk of its own making run
as a chunk of another task's sweep: the victim's sweep completes with every
combination and no error, and its chunks' records are its own.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import replace
from typing import Any

import pytest
import redis

from strategyq import add_sweep_task, get_task_result
from strategyq.examples import source
from strategyq.executor.main import SandboxHost
from strategyq.protocol.chunks import chunk_id
from strategyq.queue import keys
from strategyq.settings import Settings
from strategyq.worker import Hooks, Worker
from tests.integration.conftest import Burst, in_process

CODE = source("sma_params")
SYMBOLS = ["AAPL", "MSFT"]
START, END = "2006-01-01", "2010-12-31"
GRID = {"fast": [5, 10, 20], "slow": [10, 50, 100]}

# docs/operations.md, "Producer ACL" (raw LPUSH producers), with the queue's name.
PRODUCER_ACL = (
    "on", "resetkeys", "resetchannels", "-@all",
    "+lpush", "+get", "+blpop", "+rpush", "+ping", "+hello", "+client|setinfo",
    "%W~strategy_queue", "%R~task_result:*", "%RW~strategyq:done:*",
)  # fmt: skip


@pytest.fixture()
def producer(redis_client: redis.Redis, redis_url: str) -> Any:
    # A producer on a database other than 0 needs SELECT (docs/operations.md says so).
    db = redis_client.connection_pool.connection_kwargs.get("db", 0)
    select = ("+select",) if db else ()
    name = "producer-" + secrets.token_hex(4)
    password = secrets.token_hex(16)
    try:
        redis_client.execute_command("ACL", "SETUSER", name, *PRODUCER_ACL, *select, f">{password}")
    except redis.ResponseError as exc:
        # CLIENT SETINFO came with Redis 7.2: an older server refuses the rule (and
        # redis-py does not send the command there).
        if "client|setinfo" not in str(exc):
            raise
        rules = tuple(r for r in PRODUCER_ACL if r != "+client|setinfo")
        redis_client.execute_command("ACL", "SETUSER", name, *rules, *select, f">{password}")
    client = redis.Redis.from_url(redis_url, username=name, password=password,
                                  decode_responses=True)  # fmt: skip
    try:
        yield client
    finally:
        client.close()
        redis_client.execute_command("ACL", "DELUSER", name)


def _message(task_id: str, task_type: str, **args: Any) -> str:
    base = {"strategy_code": CODE, "symbols": SYMBOLS, "start_date": START, "end_date": END}
    return json.dumps({"task_id": task_id, "task_type": task_type, "args": {**base, **args}})


def test_the_producer_submits_and_reads_but_touches_nothing_else(
    redis_client: redis.Redis, producer: redis.Redis, settings: Settings, burst: Burst
) -> None:
    producer.lpush(
        "strategy_queue", _message("acl-own", "backtest", params={"fast": 5, "slow": 50})
    )
    burst(settings)
    own = json.loads(producer.get(keys.result("acl-own")) or "{}")
    assert own["status"] == "completed", own
    for attempt in (
        lambda: producer.set(keys.result("acl-own"), "{}"),
        lambda: producer.execute_command("SET", keys.result("someone-else"), "x"),
        lambda: producer.execute_command("DEL", keys.result("acl-own")),
        lambda: producer.execute_command("HSET", keys.sweep("victim"), "d:0", "x"),
        lambda: producer.execute_command("LPUSH", keys.DEAD_LETTER, "x"),
        lambda: producer.execute_command("LPUSH", keys.processing("w"), "x"),
        lambda: producer.execute_command("EVAL", "return 1", 0),
        lambda: producer.execute_command("LRANGE", "strategy_queue", 0, -1),
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            attempt()


class _Forger(Hooks):
    """While the victim's first chunk runs, the producer pushes chunks of its own making
    for the victim's sweep; they are moved to the head of the queue, as if another worker
    took them first (the producer can only LPUSH)."""

    def __init__(self, producer: redis.Redis, admin: redis.Redis) -> None:
        self.producer = producer
        self.admin = admin
        self.pushed = False

    def at_stage(self, task_id: str, stage: str) -> None:
        if self.pushed or task_id != chunk_id("victim", 0) or stage != "claimed":
            return
        self.pushed = True
        rows = "def s(df, params):\n    return [{'ticker': 'AAPL', 'date': '2008-01-02'}]\n"
        fails = "def s(df, params):\n    raise ValueError('attacker text')\n"
        for n, code in ((1, rows), (2, fails)):
            combos = [[i, {"fast": 5, "slow": 10}] for i in range(2 * n, 2 * n + 2)]
            forged = {
                "task_id": chunk_id("victim", n),
                "task_type": "sweep_chunk",
                "args": {"strategy_code": code, "symbols": SYMBOLS, "start_date": START,
                         "end_date": END, "maximize": "sharpe_ratio", "sweep_id": "victim",
                         "chunk": n, "combinations": combos, "folds": None},
            }  # fmt: skip
            self.producer.lpush("strategy_queue", json.dumps(forged))
            self.admin.lmove("strategy_queue", "strategy_queue", "LEFT", "RIGHT")
        # An ordinary task under a later chunk's id, and a chunk that names no sweep: either
        # would take that id's record before the real chunk runs.
        squatter = json.loads(_message(chunk_id("victim", 3), "backtest"))
        orphan = {**squatter, "task_id": chunk_id("victim", 4), "task_type": "sweep_chunk"}
        for message in (squatter, orphan):
            self.producer.lpush("strategy_queue", json.dumps(message))
            self.admin.lmove("strategy_queue", "strategy_queue", "LEFT", "RIGHT")


def test_a_chunk_pushed_by_a_producer_never_runs_as_another_tasks_chunk(
    redis_client: redis.Redis, producer: redis.Redis, settings: Settings, sandbox_host: SandboxHost
) -> None:
    add_sweep_task(redis_client, "victim", CODE, SYMBOLS, START, END, GRID)
    forger = _Forger(producer, redis_client)
    worker = Worker(replace(settings, sweep_chunk_size=2), burst=True, handle_signals=False,
                    hooks=forger, executor_factory=in_process(sandbox_host))  # fmt: skip
    assert worker.run() == 0
    assert forger.pushed
    result = get_task_result(redis_client, "victim")
    assert result is not None and result["status"] == "completed", result
    data = result["data"]
    # Every combination, each with its real metrics: nothing of the forged chunks.
    assert data["total_combinations"] == 9 and len(data["results"]) == 9
    assert data["progress"] == {"done": 9, "total": 9}
    assert "attacker text" not in json.dumps(result)
    for n in range(data["chunks"]):
        record = get_task_result(redis_client, chunk_id("victim", n))
        assert record is not None and record["status"] == "completed", record
    # The forged messages are in the dead-letter list, for the operator to see.
    dead = [json.loads(e) for e in redis_client.lrange(keys.DEAD_LETTER, 0, -1)]
    assert sorted(e["reason"] for e in dead) == ["forged_chunk"] * 4
    # The producer reads the sweep's result like any other.
    assert json.loads(producer.get(keys.result("victim")) or "{}")["status"] == "completed"
