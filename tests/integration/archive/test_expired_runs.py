"""Runs whose Redis record has expired still open, list and compare, from the run archive:
over HTTP (the dashboard's pages and ``/v1/tasks/{id}``), from the CLI, and in real headless
Chromium, on SQLite and on PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis

from strategyq import add_backtest_task
from strategyq.archive.archiver import Archiver, ArchiverConfig
from strategyq.archive.store import Archive
from strategyq.examples import source
from strategyq.executor.main import SandboxHost
from strategyq.queue import archive_feed, keys
from strategyq.settings import Settings
from tests import warm_cli
from tests.integration.api.conftest import ServeProcess, api_env
from tests.integration.archive.helpers import ROOT, wait_for
from tests.integration.browser import OpenPage
from tests.integration.conftest import in_process, run_burst

V1 = source("sma_cross")
V2 = V1.replace('df["sma_20"] > df["sma_50"]', 'df["sma_10"] > df["sma_50"]')
SYMBOLS = ["AAPL", "MSFT"]
OLD = ["old-a", "old-b", "old-err"]
NEW = ["new-a", "new-b"]


def _archive_all(client: redis.Redis, url: str) -> None:
    """Copy every run Redis lists into the archive, as ``strategyq archive`` does."""
    arch = Archiver(client, ArchiverConfig(url=url, block_ms=0))
    try:
        arch._start()
        while arch.step() or archive_feed.feed_oldest_after(client, arch.cursor) is not None:
            pass
    finally:
        arch.db.close()


@dataclass
class Setting:
    serve: ServeProcess
    env: dict[str, str]
    metrics: dict[str, dict[str, Any]]
    client: redis.Redis


@pytest.fixture(scope="module")
def expired(
    redis_url: str,
    module_worker_env: dict[str, str],
    market_home: Path,
    module_archive_url: str,
    sandbox_host: SandboxHost,
) -> Iterator[Setting]:
    """Three runs archived and then expired from Redis (their result keys' TTL ran out, and
    newer runs trimmed them from the recent-task index), and two newer runs Redis holds.

    Made once per backend for the module's tests, which only read it: they take its
    client, never ``redis_client``, whose flush would empty Redis under it."""
    archive_url = module_archive_url
    settings = Settings.from_env(module_worker_env)

    def burst(**changes: Any) -> None:
        run_burst(settings, executor_factory=in_process(sandbox_host), **changes)

    redis_client = redis.Redis.from_url(redis_url, decode_responses=True)
    try:
        redis_client.flushdb()
        archive_feed.switch_on(redis_client)
        add_backtest_task(redis_client, "old-a", V1, SYMBOLS, "2008-01-01", "2011-12-31",
                          name="crossing", tags=["old", "daily"])  # fmt: skip
        add_backtest_task(redis_client, "old-b", V2, SYMBOLS, "2008-01-01", "2011-12-31",
                          name="crossing", tags=["old"])  # fmt: skip
        add_backtest_task(redis_client, "old-err", "def f(df):\n    return 1/0\n", SYMBOLS,
                          "2010-01-01", "2010-12-31")  # fmt: skip
        burst()
        _archive_all(redis_client, archive_url)
        # The results' TTL runs out (the same expiry as after a day, only sooner).
        for task_id in OLD:
            assert redis_client.ttl(keys.result(task_id)) > 0
            redis_client.pexpire(keys.result(task_id), 1)
        wait_for(lambda: not any(redis_client.exists(keys.result(t)) for t in OLD), timeout_s=10)
        for i, task_id in enumerate(NEW):
            add_backtest_task(redis_client, task_id, V1 if i == 0 else V2, SYMBOLS, "2008-01-01",
                              "2011-12-31", name="crossing", tags=["new"])  # fmt: skip
        # An index capped at two: the newer runs push the expired ones out of it.
        burst(recent_max=len(NEW))
        _archive_all(redis_client, archive_url)
        archive = Archive.open(archive_url)
        try:
            metrics = {t: archive.run(t)["metrics"] for t in OLD + NEW}
        finally:
            archive.close()
        env = api_env(redis_url, market_home, STRATEGYQ_ARCHIVE_URL=archive_url)
        serve = ServeProcess(env).start()
        try:
            yield Setting(serve, env, metrics, redis_client)
        finally:
            serve.stop()
    finally:
        redis_client.flushdb()
        redis_client.close()


def _ids(html: str, table: str) -> list[str]:
    """The task ids of one table of the tasks page, in order."""
    found = re.search(rf'<table id="{table}">(.*?)</table>', html, re.S)
    return re.findall(r'<tr class="task[^"]*" data-task="([^"]+)"', found.group(1)) if found else []


def test_an_expired_run_opens_lists_and_compares_from_the_archive_over_http(
    expired: Setting,
) -> None:
    assert expired.client.get(keys.result("old-a")) is None
    with httpx.Client(base_url=expired.serve.url, timeout=60) as http:
        # /v1/tasks/{id}: the archived record, marked as such.
        got = http.get("/v1/tasks/old-a")
        assert got.status_code == 200, got.text
        assert got.headers["x-strategyq-source"] == "archive"
        record = got.json()
        assert record["status"] == "completed"
        assert record["data"]["task_args"]["name"] == "crossing"
        assert (
            record["data"]["performance_metrics"]["total_return"]
            == expired.metrics["old-a"]["total_return"]
        )
        fresh = http.get("/v1/tasks/new-a")
        assert fresh.status_code == 200 and "x-strategyq-source" not in fresh.headers
        assert http.get("/v1/tasks/old-a/wait", params={"timeout_s": 0}).json() == record
        missing = http.get("/v1/tasks/never-was")
        assert missing.status_code == 404

        # /tasks/{id}: the task page, its table as CSV, from the archive.
        page = http.get("/tasks/old-a")
        assert page.status_code == 200, page.text
        assert 'id="from-archive"' in page.text and 'id="equity-chart"' in page.text
        assert re.search(r'id="run-name">.*crossing.*daily.*old', page.text)
        assert 'id="task-args"' in page.text
        csv = http.get("/tasks/old-a/trades.csv")
        assert csv.status_code == 200 and len(csv.text.splitlines()) > 1
        error_page = http.get("/tasks/old-err")
        assert error_page.status_code == 200 and 'class="badge error"' in error_page.text
        unknown = http.get("/tasks/never-was")
        assert unknown.status_code == 404 and "nor in the run archive" in unknown.text
        assert 'id="from-archive"' not in http.get("/tasks/new-a").text

        # /tasks: what Redis holds, then the archived runs older than that.
        listing = http.get("/tasks").text
        assert sorted(_ids(listing, "recent")) == NEW
        assert sorted(_ids(listing, "archived-runs")) == OLD
        named = http.get("/tasks", params={"name": "crossing"}).text
        assert sorted(_ids(named, "recent")) == NEW
        assert sorted(_ids(named, "archived-runs")) == ["old-a", "old-b"]
        tagged = http.get("/tasks", params={"tag": "daily"}).text
        assert _ids(tagged, "recent") == [] and _ids(tagged, "archived-runs") == ["old-a"]
        errors = http.get("/tasks", params={"status": "error"}).text
        assert _ids(errors, "archived-runs") == ["old-err"]
        by_id = http.get("/tasks", params={"q": "old-", "symbol": "msft"}).text
        assert sorted(_ids(by_id, "archived-runs")) == OLD
        assert _ids(http.get("/tasks", params={"status": "queued"}).text, "archived-runs") == []
        # The archive's own filters search it alone, recent runs included.
        completed = OLD[:2] + NEW
        edge = max(expired.metrics[t]["total_return"] for t in completed)
        best = sorted(t for t in completed if expired.metrics[t]["total_return"] >= edge)
        top = http.get("/tasks", params={"metric": f"total_return>={edge}"}).text
        assert 'id="archive-only"' in top and sorted(_ids(top, "archived-runs")) == best
        # Each source ran once before and once after the expiry, on the same data: the best
        # is an expired run and one Redis holds, both found in the archive.
        assert {t[:3] for t in best} == {"old", "new"}
        assert _ids(top, "recent") == []
        jump = http.get("/tasks", params={"q": "old-b"}, follow_redirects=False)
        assert jump.status_code == 303 and jump.headers["location"] == "/tasks/old-b"
        bad = http.get("/tasks", params={"metric": "sharpe>1"})
        assert bad.status_code == 400 and "sharpe_ratio" in bad.text

        # /compare: an expired run beside one Redis holds.
        compare = http.get("/compare", params=[("id", "old-a"), ("id", "new-b")])
        assert compare.status_code == 200, compare.text
        assert "/tasks/old-a" in compare.text and "/tasks/new-b" in compare.text
        data = re.search(r'id="compare-data">(.*?)</script>', compare.text, re.S)
        assert data is not None
        names = [trace["name"] for trace in orjson.loads(data.group(1))["data"]]
        assert "old-a" in names and "new-b" in names
        refused = http.get("/compare", params=[("id", "old-a"), ("id", "old-err")])
        assert refused.status_code == 400 and "not a completed backtest" in refused.text

    # The CLI reads the archive too, and shows the run's name and tags.
    shown = warm_cli.run(
        ["result", "old-a"],
        cwd=ROOT, env=expired.env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "from the run archive" in shown.stderr
    assert "name crossing" in shown.stdout and "tags old, daily" in shown.stdout
    assert "waited" in shown.stdout


def test_an_expired_run_opens_lists_and_compares_in_chromium(
    expired: Setting, open_page: OpenPage, tmp_path: Path
) -> None:
    page = open_page(expired.serve.url, viewport={"width": 1280, "height": 900})
    page.goto("/tasks?name=crossing")
    archived = page.locator("#archived-runs tbody tr")
    assert archived.count() == 2
    assert {archived.nth(i).get_attribute("data-task") for i in range(2)} == {
        "old-a", "old-b"}  # fmt: skip
    assert "crossing" in archived.nth(0).locator(".run-name").inner_text()
    recent = page.locator("#recent tbody tr")
    assert recent.count() == 2
    assert "new" in recent.nth(0).locator(".run-name").inner_text()
    # Waits are shown for runs Redis holds (they were submitted with a queued record).
    assert recent.nth(0).locator("td.wait").inner_text() != "—"
    page.screenshot(path=str(tmp_path / "tasks.png"), full_page=True)
    # Tick one archived and one recent backtest, and compare them.
    page.check("#archived-runs input[value='old-a']")
    page.check("#recent input[value='new-b']")
    page.click("#compare")
    page.wait_for_url("**/compare?*")
    page.wait_for_selector("#compare-chart .main-svg", timeout=30_000)
    heads = page.locator("#compare-metrics thead th.run a").all_inner_texts()
    assert sorted(heads) == ["new-b", "old-a"]
    names = page.locator("#compare-metrics thead th.run .run-name").all_inner_texts()
    assert names == ["crossing", "crossing"]
    traces = page.evaluate("() => document.getElementById('compare-chart').data.map(t => t.name)")
    assert set(traces) >= {"old-a", "new-b"}
    # The archived run opens, its equity curve drawn.
    page.click("#compare-metrics thead a[href='/tasks/old-a']")
    page.wait_for_selector("#equity-chart .main-svg", timeout=30_000)
    assert page.locator("#from-archive").is_visible()
    assert "crossing" in page.inner_text("#run-name")
    page.screenshot(path=str(tmp_path / "archived-task.png"), full_page=True)
