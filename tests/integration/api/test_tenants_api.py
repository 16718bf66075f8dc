"""``/v1/tenants`` and the tenant fields of ``POST /v1/tasks`` against a live server."""

from __future__ import annotations

import httpx
import redis

from tests.integration.api.conftest import backtest_body

PROBLEM = "application/problem+json"


def test_quotas_set_over_http_refuse_with_429_and_retry_after(
    http: httpx.Client, redis_client: redis.Redis
) -> None:
    reply = http.put("/v1/tenants/acme", json={"max_queued": 1, "max_in_flight": 3})
    assert reply.status_code == 200, reply.text
    assert reply.json()["quotas"] == {"max_queued": 1, "max_in_flight": 3}
    first = http.post("/v1/tasks", json={**backtest_body("http-q-1"), "tenant": "acme"})
    assert first.status_code == 202, first.text
    refused = http.post("/v1/tasks", json={**backtest_body("http-q-2"), "tenant": "acme"})
    assert refused.status_code == 429, refused.text
    assert refused.headers["content-type"].startswith(PROBLEM)
    assert int(refused.headers["retry-after"]) > 0
    detail = refused.json()["detail"]
    assert "'acme'" in detail and "max_queued = 1" in detail
    assert redis_client.get("task_result:http-q-2") is None
    assert redis_client.llen("strategy_queue") == 1
    # Another tenant and another lane still go in; a lane that does not exist does not.
    other = http.post(
        "/v1/tasks", json={**backtest_body("http-o-1"), "tenant": "zed", "priority": "interactive"}
    )
    assert other.status_code == 202, other.text
    unknown = http.post("/v1/tasks", json={**backtest_body("http-o-2"), "priority": "nope"})
    assert unknown.status_code == 422 and "not a lane" in unknown.json()["detail"]
    listing = http.get("/v1/tenants").json()
    by_name = {t["tenant"]: t for t in listing["tenants"]}
    assert by_name["acme"]["queued"] == 1 and by_name["acme"]["quotas"]["max_queued"] == 1
    assert by_name["zed"]["queued"] == 1
    assert {lane["name"] for lane in listing["lanes"]} >= {"interactive", "batch"}
    # Removed (0): acme's next task goes in.
    cleared = http.put("/v1/tenants/acme", json={"max_queued": 0})
    assert cleared.json()["quotas"] == {"max_in_flight": 3}
    again = http.post("/v1/tasks", json={**backtest_body("http-q-2"), "tenant": "acme"})
    assert again.status_code == 202, again.text


def test_bad_tenant_names_and_quotas_are_refused(http: httpx.Client) -> None:
    assert http.put("/v1/tenants/a%20b", json={"max_queued": 1}).status_code == 422
    assert http.put("/v1/tenants/ok", json={"max_queued": -1}).status_code == 422
    assert http.put("/v1/tenants/ok", json={"max_things": 1}).status_code == 422
    lane = http.put("/v1/lanes/urgent", json={"weight": 7})
    assert lane.status_code == 200 and lane.json()["weight"] == 7


def test_tenants_page_and_metrics_show_lanes_tenants_and_quota_use(
    http: httpx.Client, redis_client: redis.Redis
) -> None:
    assert http.put("/v1/tenants/page-co", json={"max_queued": 4}).status_code == 200
    for i in range(3):
        body = {**backtest_body(f"page-{i}"), "tenant": "page-co"}
        assert http.post("/v1/tasks", json=body).status_code == 202
    page = http.get("/tenants")
    assert page.status_code == 200
    html = page.text
    assert 'id="lanes"' in html and "interactive" in html and "batch" in html
    assert "page-co" in html and "3 / 4" in html  # queued against max_queued
    metrics = http.get("/metrics").text
    assert 'strategyq_tenant_queued{tenant="page-co"} 3.0' in metrics
    assert "strategyq_lane_depth" in metrics
