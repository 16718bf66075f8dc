"""The /v1 API against a live ``strategyq serve`` subprocess, a real worker and a real server."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis

from strategyq.api.config import hash_token
from strategyq.client import submit_task
from strategyq.errors import TaskValidationError
from strategyq.queue.schedules import list_schedules, make_schedule
from tests import warm_cli
from tests.integration.api.conftest import ServeProcess, backtest_body
from tests.integration.api.helpers import SLOW, make_dead_letter, read_events, transitions
from tests.integration.conftest import WorkerProcess, wait_until

PROBLEM = "application/problem+json"


TOKENS = f"ops:write:{hash_token('w-secret')},viewer:read:{hash_token('r-secret')}"


@pytest.fixture(scope="module")
def token_api(module_env: dict[str, str]) -> Iterator[ServeProcess]:
    """A live API that needs a token: ``w-secret`` writes, ``r-secret`` reads."""
    api = ServeProcess({**module_env, "STRATEGYQ_API_TOKENS": TOKENS}).start()
    yield api
    api.stop()


def nothing_queued(redis_client: redis.Redis) -> None:
    assert redis_client.llen("strategy_queue") == 0
    assert redis_client.keys("task_result:*") == []


def test_submit_wait_read_and_list_a_backtest(
    http: httpx.Client, worker: WorkerProcess, redis_client: redis.Redis
) -> None:
    reply = http.post("/v1/tasks", json=backtest_body("api-bt-1"))
    assert reply.status_code == 202, reply.text
    assert reply.headers["location"] == "/v1/tasks/api-bt-1"
    assert reply.json()["status"] == "queued"
    done = http.get("/v1/tasks/api-bt-1/wait", params={"timeout_s": 60})
    assert done.status_code == 200
    result = done.json()
    assert result["status"] == "completed"
    assert result["data"]["execution_mode"] == "backtest"
    assert http.get("/v1/tasks/api-bt-1").json() == result
    listed = http.get("/v1/tasks").json()
    assert listed["total"] == 1
    assert listed["tasks"][0] | {"finished_ms": 0} == {
        "task_id": "api-bt-1", "status": "completed", "task_type": "backtest", "finished_ms": 0,
    }  # fmt: skip
    assert http.get("/v1/tasks", params={"status": "error"}).json()["total"] == 0
    assert http.get("/v1/tasks", params={"task_type": "backtest"}).json()["total"] == 1
    assert http.get("/v1/tasks", params={"task_type": "screening"}).json()["total"] == 0
    assert [t["task_id"] for t in http.get("/v1/tasks", params={"q": "bt-"}).json()["tasks"]] == [
        "api-bt-1"
    ]
    page = http.get("/tasks/api-bt-1")
    assert page.status_code == 200 and "equity-chart" in page.text


def test_a_screen_and_a_generated_task_id(
    http: httpx.Client, worker: WorkerProcess, redis_client: redis.Redis
) -> None:
    body = {"task_type": "screening", "args": {"strategy_code": backtest_body()["args"][
        "strategy_code"], "universe": ["AAPL", "MSFT", "IBM"], "limit": 2}}  # fmt: skip
    reply = http.post("/v1/tasks", json=body)
    assert reply.status_code == 202
    task_id = reply.json()["task_id"]
    assert uuid.UUID(task_id)
    result = http.get(f"/v1/tasks/{task_id}/wait", params={"timeout_s": 60}).json()
    assert result["status"] == "completed" and result["data"]["execution_mode"] == "screening"
    assert http.get(f"/tasks/{task_id}").status_code == 200


def _producer_message(body: dict[str, Any]) -> str:
    client = redis.Redis(host="127.0.0.1", port=1)  # never reached: validation comes first
    with pytest.raises(TaskValidationError) as caught:
        submit_task(client, {"task_id": "x", **body})
    return str(caught.value)


@pytest.mark.parametrize(
    "args",
    [
        {"symbols": "", "start_date": "2010-01-01", "end_date": "2011-01-01"},
        {"symbols": ["AAPL"], "start_date": "yesterday", "end_date": "2011-01-01"},
        {"symbols": [3], "start_date": "2010-01-01", "end_date": "2011-01-01"},
        {"symbols": ["AAPL"], "start_date": "2012-01-01", "end_date": "2011-01-01"},
        {"symbols": ["AAPL"], "start_date": "2010-01-01", "end_date": "2011-01-01",
         "timeout_seconds": -1},
    ],
    ids=["empty-symbols", "bad-date", "symbol-type", "swapped-dates", "negative-timeout"],
)  # fmt: skip
def test_invalid_args_get_the_producers_message_and_nothing_is_queued(
    http: httpx.Client, redis_client: redis.Redis, args: dict[str, Any]
) -> None:
    body = {"task_type": "backtest", "args": {"strategy_code": "def f(df):\n  return []", **args}}
    reply = http.post("/v1/tasks", json=body)
    assert reply.status_code == 422
    assert reply.headers["content-type"] == PROBLEM
    assert reply.json()["detail"] == _producer_message(body)
    nothing_queued(redis_client)


@pytest.mark.parametrize(
    ("content", "headers", "status", "phrase"),
    [
        (b'{"task_type": "nope", "args": {}}', {}, 422, "task_type must be"),
        (b'{"task_type": 7, "args": {}}', {}, 422, "task_type"),
        (b'{"task_type": "backtest", "args": [1]}', {}, 422, "args"),
        (b'{"task_type": "backtest"}', {}, 422, "args is required"),
        (b'{"task_type": "backtest", "args": {}', {}, 422, "not valid JSON"),
        (b"[]", {}, 422, "request not accepted"),
        (b'{"task_type": "backtest", "args": {}}', {"content-type": "text/plain"}, 415, "JSON"),
        (b'{"task_id": "' + b"x" * 3_000_000 + b'"}', {}, 413, "STRATEGYQ_API_MAX_BODY"),
    ],
    ids=["unknown-type", "type-not-string", "args-not-object", "no-args", "broken-json",
         "not-an-object", "not-json", "oversize"],
)  # fmt: skip
def test_bad_bodies_are_problems_that_say_what_to_fix(
    http: httpx.Client,
    redis_client: redis.Redis,
    content: bytes,
    headers: dict[str, str],
    status: int,
    phrase: str,
) -> None:
    reply = http.post(
        "/v1/tasks", content=content, headers={"content-type": "application/json", **headers}
    )
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"] == PROBLEM
    problem = reply.json()
    assert problem["status"] == status and phrase in problem["detail"]
    nothing_queued(redis_client)


def test_unknown_ids_and_routes_are_404_problems(
    http: httpx.Client, redis_client: redis.Redis
) -> None:
    for path in ("/v1/tasks/nope", "/v1/tasks/nope/wait", "/v1/tasks/nope/events", "/v1/nothing"):
        reply = http.get(path)
        assert reply.status_code == 404 and reply.headers["content-type"] == PROBLEM, path
    assert http.post("/v1/tasks/nope/cancel").status_code == 404
    assert "dead-letter" in http.post("/v1/dead-letters/nope/retry").json()["detail"]


@pytest.fixture(scope="module")
def own_queue_api(module_env: dict[str, str]) -> Iterator[ServeProcess]:
    """A live API on a queue of its own, which no worker serves until a test starts one
    (and stops it before the test ends)."""
    api = ServeProcess({**module_env, "STRATEGYQ_QUEUE": f"own-{uuid.uuid4().hex[:6]}"}).start()
    yield api
    api.stop()


def test_event_stream_delivers_every_transition(
    module_env: dict[str, str], redis_client: redis.Redis, own_queue_api: ServeProcess
) -> None:
    api = own_queue_api
    queue = api.env["STRATEGYQ_QUEUE"]
    watcher = redis_client.pubsub(ignore_subscribe_messages=True)
    watcher.subscribe("strategyq:events:sse-1")
    worker: WorkerProcess | None = None
    try:
        with httpx.Client(base_url=api.url, timeout=120) as http:
            assert (
                http.post("/v1/tasks", json=backtest_body("sse-1", strategy_code=SLOW)).status_code
                == 202
            )
            with http.stream("GET", "/v1/tasks/sse-1/events") as stream:
                assert stream.headers["content-type"].startswith("text/event-stream")
                # The worker starts only now: the stream sees the task from "queued" on.
                worker = WorkerProcess(
                    {**module_env, "STRATEGYQ_QUEUE": queue}, "sse-worker"
                ).start()
                events = read_events(stream)
    finally:
        if worker is not None:
            worker.stop()
    published = []
    quiet_until = time.monotonic() + 1.0
    while time.monotonic() < quiet_until:
        message = watcher.get_message(timeout=0.2)
        if message is not None and message["type"] == "message":
            record = orjson.loads(message["data"])
            published.append({"status": record["status"], "stage": record["data"].get("stage")})
            quiet_until = time.monotonic() + 1.0
    watcher.close()
    seen = transitions(events)
    assert seen[0] == ("queued", None)
    assert seen[-1] == ("completed", None)
    assert ("running", "running_strategy") in seen
    # Every record the queue published is a step of the stream, in order.
    assert transitions(published) == seen


def test_long_poll_returns_when_the_task_completes(
    module_env: dict[str, str], redis_client: redis.Redis, own_queue_api: ServeProcess
) -> None:
    api = own_queue_api
    queue = api.env["STRATEGYQ_QUEUE"]
    worker: WorkerProcess | None = None
    try:
        with httpx.Client(base_url=api.url, timeout=120) as http:
            assert http.post("/v1/tasks", json=backtest_body("wait-1")).status_code == 202
            early = http.get("/v1/tasks/wait-1/wait", params={"timeout_s": 0.5})
            assert early.status_code == 202 and early.json()["status"] == "queued"
            answer: dict[str, Any] = {}

            def long_poll() -> None:
                started = time.monotonic()
                reply = http.get("/v1/tasks/wait-1/wait", params={"timeout_s": 100})
                answer.update(reply=reply, returned=time.monotonic(), started=started)

            poller = threading.Thread(target=long_poll)
            poller.start()
            time.sleep(1.0)
            assert not answer, "the long-poll returned before the task ran"
            worker = WorkerProcess({**module_env, "STRATEGYQ_QUEUE": queue}, "wait-worker").start()
            poller.join(120)
            assert answer["reply"].status_code == 200
            assert answer["reply"].json()["status"] == "completed"
            assert answer["returned"] - answer["started"] < 100
    finally:
        if worker is not None:
            worker.stop()


def test_cancel_a_queued_task(own_queue_api: ServeProcess, redis_client: redis.Redis) -> None:
    with httpx.Client(base_url=own_queue_api.url, timeout=30) as http:
        http.post("/v1/tasks", json=backtest_body("c-1"))
        reply = http.post("/v1/tasks/c-1/cancel")
        assert reply.json() == {"task_id": "c-1", "previous_status": "queued"}
        assert http.get("/v1/tasks/c-1").json()["status"] == "cancelled"
        listed = http.get("/v1/tasks", params={"status": "cancelled"}).json()
        assert [t["task_id"] for t in listed["tasks"]] == ["c-1"]
        assert http.post("/v1/tasks/c-1/cancel").json()["previous_status"] == "cancelled"


def test_queue_and_workers_show_the_live_worker(
    http: httpx.Client, worker: WorkerProcess, redis_client: redis.Redis
) -> None:
    def alive() -> list[dict[str, Any]]:
        return [w for w in http.get("/v1/workers").json() if w["worker_id"] == "api-worker"]

    (me,) = wait_until(alive, timeout_s=10)
    assert me["alive"] is True and me["heartbeat_age_s"] < 5
    assert {"landlock", "seccomp"} <= set(me["layers"])
    stats = http.get("/v1/queue").json()
    assert stats["workers_alive"] >= 1 and stats["depth"] == 0
    assert len(stats["throughput"]) == 12


def test_dead_letters_list_retry_and_purge(
    http: httpx.Client, worker: WorkerProcess, module_env: dict[str, str], redis_client: redis.Redis
) -> None:
    make_dead_letter(redis_client, module_env, "dl-1", f"dlq-{uuid.uuid4().hex[:6]}", worker)
    (entry,) = http.get("/v1/dead-letters").json()
    assert entry["task_id"] == "dl-1" and entry["reason"] == "worker_lost"
    assert "def gap_up_strategy" in entry["raw"]  # a write-scope caller sees the source
    assert http.get("/v1/tasks", params={"status": "error"}).json()["tasks"][0]["task_id"] == "dl-1"
    assert http.post("/v1/dead-letters/dl-1/retry").json()["count"] == 1
    assert http.get("/v1/dead-letters").json() == []
    result = http.get("/v1/tasks/dl-1/wait", params={"timeout_s": 60}).json()
    assert result["status"] == "completed"  # the module's healthy worker ran it
    redis_client.lpush(
        "strategyq:dead_letter", orjson.dumps({"raw": "junk", "reason": "malformed"})
    )
    assert http.delete("/v1/dead-letters").json()["count"] == 1


def test_tokens_scopes_and_hidden_source(
    token_api: ServeProcess, redis_client: redis.Redis, worker: WorkerProcess
) -> None:
    api = token_api
    with httpx.Client(base_url=api.url, timeout=30) as anon:
        reply = anon.get("/v1/queue")
        assert reply.status_code == 401 and reply.headers["content-type"] == PROBLEM
        assert reply.headers["www-authenticate"].startswith("Bearer")
        assert "Authorization: Bearer" in reply.json()["detail"]
        bad = anon.get("/v1/queue", headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401 and "not valid" in bad.json()["detail"]
        assert anon.get("/healthz").status_code == 200
        assert anon.get("/", follow_redirects=False).headers["location"].startswith("/login")
    read = {"Authorization": "Bearer r-secret"}
    write = {"Authorization": "Bearer w-secret"}
    with httpx.Client(base_url=api.url, timeout=60) as http:
        denied = http.post("/v1/tasks", json=backtest_body("tok-1"), headers=read)
        assert denied.status_code == 403 and "write-scope" in denied.json()["detail"]
        assert http.post("/v1/tasks", json=backtest_body("tok-1"), headers=write).status_code == 202
        assert http.get("/v1/tasks/tok-1/wait", headers=read).json()["status"] == "completed"
        redis_client.lpush("strategyq:dead_letter", orjson.dumps({
            "raw": orjson.dumps(backtest_body("tok-2") | {"task_id": "tok-2"}).decode(),
            "task_id": "tok-2", "reason": "worker_lost", "attempts": 3}))  # fmt: skip
        (hidden,) = http.get("/v1/dead-letters", headers=read).json()
        assert "def gap_up_strategy" not in hidden["raw"] and "hidden" in hidden["raw"]
        (shown,) = http.get("/v1/dead-letters", headers=write).json()
        assert "def gap_up_strategy" in shown["raw"]
        assert http.post("/v1/dead-letters/retry", headers=read).status_code == 403


def test_public_bind_without_tokens_refuses_to_start(module_env: dict[str, str]) -> None:
    proc = warm_cli.run(
        ["serve", "--host", "0.0.0.0", "--port", "1"],
        env=module_env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "needs tokens" in proc.stderr and "--new-token" in proc.stderr


def test_browsers_of_other_sites_are_refused(http: httpx.Client, redis_client: redis.Redis) -> None:
    forged = http.post("/v1/tasks", json=backtest_body("x"), headers={"Origin": "http://evil.test"})
    assert forged.status_code == 403 and forged.headers["content-type"] == PROBLEM
    rebinding = http.get("/v1/queue", headers={"Host": "evil.test"})
    assert rebinding.status_code == 400 and "Host" in rebinding.json()["detail"]
    no_csrf = http.post("/dead-letters/purge", data={"csrf": "guess"})
    assert no_csrf.status_code == 403
    nothing_queued(redis_client)


def test_metrics_count_requests_by_route_and_status(http: httpx.Client) -> None:
    http.get("/v1/tasks/missing")
    text = http.get("/metrics").text
    assert (
        'strategyq_api_requests_total{method="GET",route="/v1/tasks/{task_id}",status="404"}'
        in text
    )
    assert "strategyq_api_request_duration_seconds_bucket" in text


def test_html_report_is_self_contained(
    http: httpx.Client, worker: WorkerProcess, module_env: dict[str, str], tmp_path: Path,
    redis_client: redis.Redis,
) -> None:  # fmt: skip
    http.post("/v1/tasks", json=backtest_body("rep-1"))
    result = http.get("/v1/tasks/rep-1/wait", params={"timeout_s": 60}).json()
    out = tmp_path / "report.html"
    proc = warm_cli.run(
        ["result", "rep-1", "--html", str(out)],
        env=module_env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    html = out.read_text()
    assert "<script src=" not in html and "<link " not in html.replace(
        '<link rel="icon" href="data:,">', ""
    )
    assert "Plotly" in html
    start = html.index('<script type="application/json" id="equity-data">') + 49
    spec = orjson.loads(html[start : html.index("</script>", start)])
    assert len(spec["data"][0]["x"]) == len(result["data"]["equity_curve"]["dates"])


def test_a_failed_strategy_shows_its_own_traceback_on_its_page(
    http: httpx.Client, worker: WorkerProcess, redis_client: redis.Redis
) -> None:
    code = "def broken(df):\n    x = 1\n    return [{'ticker': 'AAPL', 'score': x / 0}]\n"
    http.post("/v1/tasks", json=backtest_body("bad-1", strategy_code=code))
    result = http.get("/v1/tasks/bad-1/wait", params={"timeout_s": 60}).json()
    assert result["status"] == "error" and result["data"]["error_type"] == "strategy_error"
    page = http.get("/tasks/bad-1", headers={"Accept": "text/html"}).text
    assert "ZeroDivisionError" in page and "line 3" in page
    assert (
        http.get("/v1/tasks", params={"status": "error"}).json()["tasks"][0]["task_id"] == "bad-1"
    )


SWEEP_CODE = (
    "def sma_cross(df, params):\n"
    "    close = df.groupby('ticker')['close']\n"
    "    fast = close.transform(lambda s: s.rolling(params['fast']).mean())\n"
    "    slow = close.transform(lambda s: s.rolling(params['slow']).mean())\n"
    "    hit = df[fast > slow]\n"
    "    return hit[['ticker', 'date']]\n"
)


def test_a_sweep_goes_through_the_same_path_and_is_filed_as_a_sweep(
    http: httpx.Client, worker: WorkerProcess, redis_client: redis.Redis
) -> None:
    body = {"task_id": "api-sweep-1", "task_type": "sweep", "args": {
        "strategy_code": SWEEP_CODE, "symbols": ["AAPL", "MSFT"],
        "start_date": "2010-01-01", "end_date": "2011-12-31", "hold_days": 5,
        "param_grid": {"fast": [5, 10], "slow": [20, 40]}}}  # fmt: skip
    reply = http.post("/v1/tasks", json=body)
    assert reply.status_code == 202, reply.text
    done = http.get("/v1/tasks/api-sweep-1/wait", params={"timeout_s": 120})
    result = done.json()
    assert result["status"] == "completed", result
    assert result["data"]["execution_mode"] == "sweep"
    assert len(result["data"]["results"]) == 4
    sweeps = http.get("/v1/tasks", params={"task_type": "sweep"}).json()
    assert [t["task_id"] for t in sweeps["tasks"]] == ["api-sweep-1"]
    assert sweeps["tasks"][0]["status"] == "completed"
    completed = http.get("/v1/tasks", params={"task_type": "sweep", "status": "completed"}).json()
    assert completed["total"] == 1
    # A bad sweep gets the producer's own message, and nothing is queued for it.
    bad = {"task_id": "x", "task_type": "sweep", "args": {**body["args"], "param_grid": {}}}
    refused = http.post("/v1/tasks", json=bad)
    assert refused.status_code == 422, refused.text
    assert refused.json()["detail"] == _producer_message(bad)
    assert redis_client.get("task_result:x") is None


SCREEN_CODE = (
    "def top(df):\n"
    "    last = df[df.date == df.date.max()]\n"
    "    return [{'ticker': r.ticker, 'score': r.close} for r in last.itertuples()]\n"
)


def schedule_body(name: str, **fields: Any) -> dict[str, Any]:
    return {
        "name": name, "cron": "30 21 * * 1-5", "tz": "America/New_York",
        "task_type": "screening",
        "args": {"strategy_code": SCREEN_CODE, "universe": ["AAPL", "MSFT"], "limit": 2},
        **fields,
    }  # fmt: skip


def _cli_message(body: dict[str, Any]) -> str:
    with pytest.raises(TaskValidationError) as caught:
        make_schedule(body["name"], body["cron"], body["tz"], body["task_type"], body["args"])
    return str(caught.value)


def test_schedules_add_list_get_pause_resume_run_now_and_remove(
    http: httpx.Client, worker: WorkerProcess, redis_client: redis.Redis
) -> None:
    added = http.post("/v1/schedules", json=schedule_body("api-close"))
    assert added.status_code == 201, added.text
    assert added.headers["location"] == "/v1/schedules/api-close"
    shown = added.json()
    assert shown["name"] == "api-close" and shown["paused"] is False
    assert shown["tz"] == "America/New_York" and shown["next_slot"].endswith(("-05:00", "-04:00"))
    assert shown["args"]["strategy_code"] == SCREEN_CODE
    # What the CLI reads is what HTTP stored.
    (state,) = list_schedules(redis_client)
    assert state.schedule.name == "api-close" and state.schedule.cron == "30 21 * * 1-5"
    assert http.get("/v1/schedules").json() == [shown]
    assert http.get("/v1/schedules/api-close").json() == shown
    again = http.post("/v1/schedules", json=schedule_body("api-close"))
    assert again.status_code == 409 and again.headers["content-type"] == PROBLEM
    assert "exists" in again.json()["detail"]

    paused = http.post("/v1/schedules/api-close/pause")
    assert paused.status_code == 200 and paused.json()["paused"] is True
    assert redis_client.sismember("strategyq:schedules:paused", "api-close")
    resumed = http.post("/v1/schedules/api-close/resume")
    assert resumed.status_code == 200 and resumed.json()["paused"] is False

    ran = http.post("/v1/schedules/api-close/run-now")
    assert ran.status_code == 202, ran.text
    task_id = ran.json()["task_id"]
    assert task_id.startswith("api-close:now:")
    assert ran.headers["location"] == f"/v1/tasks/{task_id}"
    result = http.get(f"/v1/tasks/{task_id}/wait", params={"timeout_s": 60}).json()
    assert result["status"] == "completed", result
    assert result["data"]["execution_mode"] == "screening"

    removed = http.delete("/v1/schedules/api-close")
    assert removed.status_code == 204
    assert list_schedules(redis_client) == []
    for reply in (
        http.get("/v1/schedules/api-close"),
        http.post("/v1/schedules/api-close/pause"),
        http.post("/v1/schedules/api-close/run-now"),
        http.delete("/v1/schedules/api-close"),
    ):
        assert reply.status_code == 404 and reply.headers["content-type"] == PROBLEM
        assert "no schedule named 'api-close'" in reply.json()["detail"]


@pytest.mark.parametrize(
    "fields",
    [
        {"cron": "61 * * * *"},
        {"cron": "every day"},
        {"tz": "Mars/Olympus_Mons"},
        {"name": "has space"},
        {"task_type": "sweep_chunk"},
        {"args": {"strategy_code": SCREEN_CODE, "universe": []}},
    ],
    ids=["cron-range", "cron-words", "unknown-tz", "bad-name", "sweep-chunk", "bad-args"],
)
def test_a_bad_schedule_is_a_problem_with_the_clis_message_and_nothing_is_stored(
    http: httpx.Client, redis_client: redis.Redis, fields: dict[str, Any]
) -> None:
    body = {**schedule_body("api-bad"), **fields}
    reply = http.post("/v1/schedules", json=body)
    assert reply.status_code == 422, reply.text
    assert reply.headers["content-type"] == PROBLEM
    assert reply.json()["detail"] == _cli_message(body)
    assert list_schedules(redis_client) == []
    assert not redis_client.exists("strategyq:schedules", "strategyq:schedules:last")


def test_a_read_scope_token_reads_schedules_but_cannot_change_them(
    token_api: ServeProcess, redis_client: redis.Redis
) -> None:
    api = token_api
    read = {"Authorization": "Bearer r-secret"}
    write = {"Authorization": "Bearer w-secret"}
    with httpx.Client(base_url=api.url, timeout=30) as http:
        denied = http.post("/v1/schedules", json=schedule_body("tok-s"), headers=read)
        assert denied.status_code == 403 and "write-scope" in denied.json()["detail"]
        assert list_schedules(redis_client) == []
        assert http.get("/v1/schedules").status_code == 401
        made = http.post("/v1/schedules", json=schedule_body("tok-s"), headers=write)
        assert made.status_code == 201, made.text
        (seen,) = http.get("/v1/schedules", headers=read).json()
        assert seen["name"] == "tok-s" and "hidden" in seen["args"]["strategy_code"]
        assert http.get("/v1/schedules/tok-s", headers=write).json()["args"][
            "strategy_code"] == SCREEN_CODE  # fmt: skip
        for path in ("/v1/schedules/tok-s/pause", "/v1/schedules/tok-s/resume",
                     "/v1/schedules/tok-s/run-now"):  # fmt: skip
            assert http.post(path, headers=read).status_code == 403, path
        assert http.delete("/v1/schedules/tok-s", headers=read).status_code == 403
        assert redis_client.llen("strategy_queue") == 0
        assert not redis_client.sismember("strategyq:schedules:paused", "tok-s")
        assert http.delete("/v1/schedules/tok-s", headers=write).status_code == 204


def test_sweep_chunks_are_refused_at_the_producer_edge_and_run_by_the_worker(
    http: httpx.Client, worker: WorkerProcess, redis_client: redis.Redis
) -> None:
    chunk = {"task_id": "chunk-x", "task_type": "sweep_chunk", "args": {
        "strategy_code": SWEEP_CODE, "symbols": ["AAPL"], "start_date": "2010-01-01",
        "end_date": "2011-12-31", "sweep_id": "s", "chunk": 0, "combinations": []}}  # fmt: skip
    with pytest.raises(TaskValidationError, match="task_type 'sweep_chunk'") as caught:
        submit_task(redis_client, chunk)
    assert "task_type 'sweep'" in str(caught.value)
    reply = http.post("/v1/tasks", json=chunk)
    assert reply.status_code == 422 and reply.headers["content-type"] == PROBLEM
    assert reply.json()["detail"] == str(caught.value)
    nothing_queued(redis_client)
    # The chunks a sweep fans out are still run: the whole sweep completes.
    body = {"task_id": "edge-sweep", "task_type": "sweep", "args": {
        "strategy_code": SWEEP_CODE, "symbols": ["AAPL"], "start_date": "2010-01-01",
        "end_date": "2011-12-31", "param_grid": {"fast": [5, 10], "slow": [20]}}}  # fmt: skip
    assert http.post("/v1/tasks", json=body).status_code == 202
    result = http.get("/v1/tasks/edge-sweep/wait", params={"timeout_s": 120}).json()
    assert result["status"] == "completed", result
    assert len(result["data"]["results"]) == 2
