"""Attacks on the web surface of a live ``strategyq serve``, each a regression test of a hole.

Each test names what broke: framing, foreign scripts, ids that broke headers,
chart data that ended its script element, records of an odd shape, tokens in
URLs.
"""

from __future__ import annotations

import html
import http.server
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
import redis

from strategyq.api.config import hash_token
from tests.conftest import free_port
from tests.integration.api.conftest import ServeProcess, backtest_body
from tests.integration.conftest import wait_until

PAGES = ("/", "/tasks", "/dead-letters", "/submit", "/tasks/no-such-task")


@pytest.mark.parametrize("path", [*PAGES, "/v1/queue", "/static/style.css", "/openapi.json"])
def test_every_answer_forbids_framing_sniffing_foreign_scripts_and_referrers(
    http: httpx.Client, path: str
) -> None:
    reply = http.get(path)
    csp = reply.headers["content-security-policy"]
    directives = {d.split()[0]: d.split()[1:] for d in csp.split("; ")}
    assert directives["frame-ancestors"] == ["'none'"]
    assert directives["script-src"] == ["'self'"]
    assert directives["object-src"] == ["'none'"]
    assert reply.headers["x-frame-options"] == "DENY"
    assert reply.headers["x-content-type-options"] == "nosniff"
    assert reply.headers["referrer-policy"] == "same-origin"


@pytest.mark.parametrize("path", PAGES)
def test_pages_hold_no_inline_script_or_handler(
    http: httpx.Client, redis_client: redis.Redis, path: str
) -> None:
    # A dead letter makes the pages show their retry and purge forms.
    redis_client.lpush("strategyq:dead_letter", orjson.dumps({"raw": "{}", "task_id": "dl-1"}))
    html = http.get(path).text.lower()
    # Every script element loads a file of this server or is inert JSON data.
    for chunk in html.split("<script")[1:]:
        tag = chunk.split(">", 1)[0]
        assert 'src="/static/' in tag or 'type="application/json"' in tag, tag
    for handler in (" onclick=", " onsubmit=", " onload=", " onerror=", "javascript:"):
        assert handler not in html


@pytest.fixture
def framing_site(serve: ServeProcess) -> Iterator[str]:
    """A page on another port of the same host that frames /dead-letters."""
    html = (
        f'<iframe id="victim" src="{serve.url}/dead-letters" width="800" height="600"></iframe>'
    ).encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(html)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_another_port_cannot_frame_the_dead_letter_page(
    chromium: Any, framing_site: str, redis_client: redis.Redis
) -> None:
    redis_client.lpush("strategyq:dead_letter", orjson.dumps({"raw": "{}", "task_id": "dl-1"}))
    context = chromium.new_context()
    try:
        page = context.new_page()
        page.goto(framing_site)
        page.wait_for_load_state("load")
        frame = page.frame_locator("#victim")
        # A framed page that loaded would show its "Retry all" button to click through.
        assert frame.locator("#retry-all").count() == 0
    finally:
        context.close()
    assert redis_client.llen("strategyq:dead_letter") == 1


@pytest.mark.parametrize("task_id", ["задача-1", "emoji-🚀-👨‍👩‍👧", "a/b c?d#e%f", "x" + "é" * 50])
def test_any_printable_id_is_queued_with_a_percent_encoded_location(
    http: httpx.Client, redis_client: redis.Redis, task_id: str
) -> None:
    reply = http.post("/v1/tasks", json=backtest_body(task_id))
    assert reply.status_code == 202, reply.text
    location = reply.headers["location"]
    assert location.isascii() and location == "/v1/tasks/" + urllib.parse.quote(task_id, safe=":@")
    assert reply.json()["links"]["self"] == location
    assert reply.json()["task_id"] == task_id
    assert orjson.loads(redis_client.get(f"task_result:{task_id}"))["status"] == "queued"
    if "/" not in task_id:
        assert http.get(location).json()["status"] in ("queued", "running", "completed")
    # Its dashboard page, whatever the id holds ("/" included).
    page = http.get("/tasks/" + urllib.parse.quote(task_id))
    assert page.status_code == 200, page.text
    assert f'<h1 class="task-id">{html.escape(task_id)}</h1>' in page.text


@pytest.mark.parametrize(
    "task_id", ["line\u2028sep", "crlf\r\nSet-Cookie: x=1", "tab\tid", "nul\0"]
)
def test_an_id_with_a_control_character_is_refused_before_anything_is_queued(
    http: httpx.Client, redis_client: redis.Redis, task_id: str
) -> None:
    reply = http.post("/v1/tasks", json=backtest_body(task_id))
    assert reply.status_code == 422, reply.text
    assert "control character" in reply.json()["detail"]
    assert redis_client.llen("strategy_queue") == 0
    assert redis_client.keys("task_result:*") == []


CLOSERS = "<!--<script></script><script>window.pwned=1</script>"


def _odd_backtest(task_id: str) -> dict[str, Any]:
    return {
        "status": "completed",
        "updated_at": "2024-01-01T00:00:00Z",
        "data": {
            "execution_mode": "backtest",
            "performance_metrics": {"total_return": 0.1},
            "summary": {"num_trades": 1},
            "equity_curve": {
                "dates": ["2020-01-01", CLOSERS],
                "values": [100.0, 110.0],
            },
            "trades": [{"ticker": CLOSERS, "entry_date": "2020-01-01", "entry_price": 1.0}],
        },
    }


def test_chart_data_that_opens_a_comment_and_script_stays_data(
    page: Any, redis_client: redis.Redis
) -> None:
    redis_client.set("task_result:closers", orjson.dumps(_odd_backtest("closers")))
    page.goto("/tasks/closers")
    page.wait_for_selector("#equity-chart .main-svg")
    assert page.evaluate("() => window.pwned") is None
    # The page after the data is still a page: its own script ran and drew the chart.
    drawn = page.evaluate("() => document.getElementById('equity-chart').data[0].x")
    assert drawn == ["2020-01-01", CLOSERS]
    assert page.locator("script[src='/static/live.js']").count() == 1


ODD_RECORDS: list[Any] = [
    [1, 2, 3],
    "a string",
    {"status": 5, "data": [1, 2]},
    {"status": "completed", "data": "text"},
    {"status": "completed", "data": {"execution_mode": "backtest", "performance_metrics": [1],
                                     "summary": "x", "trades": [1, "a", None],
                                     "instances": {"a": 1}, "equity_curve": [1]}},
    {"status": "completed", "data": {"execution_mode": "backtest", "summary": {
        "trade_model": "x", "date_range": 5}, "equity_curve": {"dates": "x", "values": 1},
        "execution_time_ms": "slow", "warnings": "one", "logs": {"text": 5}}},
    {"status": "completed", "data": {"execution_mode": "screening", "ranked_results": "x"}},
    {"status": "error", "data": {"error": {"nested": True}, "error_type": 7}},
    {"status": "running", "data": {"stage": ["a"], "worker_id": 3}},
]  # fmt: skip


@pytest.mark.parametrize("record", ODD_RECORDS, ids=lambda r: orjson.dumps(r).decode()[:40])
def test_a_record_of_any_shape_has_a_page(
    http: httpx.Client, redis_client: redis.Redis, record: Any
) -> None:
    redis_client.set("task_result:odd", orjson.dumps(record))
    reply = http.get("/tasks/odd")
    assert reply.status_code in (200, 404), reply.text
    if isinstance(record, dict):
        assert reply.status_code == 200 and "odd" in reply.text


ODD_DEAD_LETTERS: list[bytes] = [
    b"5",
    b'"a string"',
    b"[1, 2]",
    b"null",
    b"not json",
    orjson.dumps({"task_id": 5, "attempts": "three", "reason": ["x"], "raw": {"a": 1}}),
]


def test_dead_letters_of_any_shape_are_listed(
    http: httpx.Client, redis_client: redis.Redis
) -> None:
    for entry in ODD_DEAD_LETTERS:
        redis_client.lpush("strategyq:dead_letter", entry)
    listed = http.get("/v1/dead-letters")
    assert listed.status_code == 200, listed.text
    assert len(listed.json()) == len(ODD_DEAD_LETTERS)
    assert http.get("/dead-letters").status_code == 200
    assert http.get("/").status_code == 200
    retried = http.post("/v1/dead-letters/retry")
    assert retried.status_code == 200 and retried.json()["count"] == 0
    assert redis_client.llen("strategyq:dead_letter") == len(ODD_DEAD_LETTERS)


WRITE_TOKEN = f"ops:write:{hash_token('w-secret')}"
TWO_TOKENS = f"{WRITE_TOKEN},viewer:read:{hash_token('r-secret')}"


@pytest.fixture(scope="module")
def write_token_api(module_env: dict[str, str]) -> Iterator[ServeProcess]:
    """A live API with one token, ``w-secret``, that writes."""
    api = ServeProcess({**module_env, "STRATEGYQ_API_TOKENS": WRITE_TOKEN}).start()
    yield api
    api.stop()


def test_a_token_in_the_query_string_is_not_copied_into_the_login_redirect(
    write_token_api: ServeProcess,
) -> None:
    with httpx.Client(base_url=write_token_api.url, timeout=30) as anon:
        reply = anon.get(
            "/tasks?status=error&token=w-secret&api_key=w-secret", follow_redirects=False
        )
        assert reply.status_code == 303
        location = reply.headers["location"]
        assert "w-secret" not in location
        target = urllib.parse.parse_qs(urllib.parse.urlsplit(location).query)["next"][0]
        assert target == "/tasks?status=error"


def _open_and_abandon(port: int, path: str, count: int) -> None:
    """``count`` requests that send their headers and are then dropped without reading."""
    sockets = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        sockets.append(sock)
    time.sleep(1.0)  # every request has reached its handler and is waiting
    for sock in sockets:
        sock.close()


def _queued_task(api: ServeProcess, task_id: str) -> None:
    with httpx.Client(base_url=api.url, timeout=30) as http:
        assert http.post("/v1/tasks", json=backtest_body(task_id)).status_code == 202


def test_abandoned_long_polls_and_streams_free_their_places_at_once(
    module_env: dict[str, str], redis_client: redis.Redis
) -> None:
    # No worker reads this queue: the task stays queued and every follower waits.
    api = ServeProcess({**module_env, "STRATEGYQ_QUEUE": "abandoned"}).start()
    try:
        _queued_task(api, "waited-on")
        redis_client.set("task_result:done", orjson.dumps({"status": "completed", "data": {}}))
        _open_and_abandon(api.port, "/v1/tasks/waited-on/wait?timeout_s=300", 70)
        _open_and_abandon(api.port, "/v1/tasks/waited-on/events", 30)
        with httpx.Client(base_url=api.url, timeout=5) as http:
            # Other clients are served at once, finished task or not.
            deadline = time.monotonic() + 5
            while True:
                reply = http.get("/v1/tasks/done/wait?timeout_s=1")
                if reply.status_code == 200 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            assert reply.status_code == 200 and reply.json()["status"] == "completed"
            with http.stream("GET", "/v1/tasks/done/events") as stream:
                assert stream.status_code == 200
                assert "completed" in stream.read().decode()
        # And the subscriptions of the clients that left are gone.
        wait_until(
            lambda: redis_client.pubsub_numsub("strategyq:events:waited-on")[0][1] == 0,
            timeout_s=5,
        )
    finally:
        api.stop()


def test_past_the_bound_a_follower_gets_503_with_retry_after(
    module_env: dict[str, str], redis_client: redis.Redis
) -> None:
    api = ServeProcess(
        {**module_env, "STRATEGYQ_QUEUE": "bounded", "STRATEGYQ_API_MAX_FOLLOWERS": "3"}
    ).start()
    try:
        _queued_task(api, "followed")
        with httpx.Client(base_url=api.url, timeout=10) as http:
            streams = [http.stream("GET", "/v1/tasks/followed/events") for _ in range(3)]
            opened = [s.__enter__() for s in streams]
            assert all(r.status_code == 200 for r in opened)
            refused = http.get("/v1/tasks/followed/wait?timeout_s=30")
            assert refused.status_code == 503
            assert refused.headers["retry-after"] == "5"
            assert "STRATEGYQ_API_MAX_FOLLOWERS" in refused.json()["detail"]
            assert http.get("/v1/tasks/followed/events").status_code == 503
            streams[0].__exit__(None, None, None)
            assert wait_until(
                lambda: http.get("/v1/tasks/followed/wait?timeout_s=0").status_code == 202,
                timeout_s=5,
            )
            for stream in streams[1:]:
                stream.__exit__(None, None, None)
    finally:
        api.stop()


def _csrf(html: str) -> str:
    return html.split('name="csrf" value="', 1)[1].split('"', 1)[0]


def _login(client: httpx.Client, secret: str, **headers: str) -> httpx.Response:
    form = client.get("/login", headers=headers)
    csrf = _csrf(form.text)
    return client.post(
        "/login",
        data={"token": secret, "csrf": csrf, "next": "/"},
        headers={**headers, "Cookie": f"strategyq_csrf={csrf}"},
        follow_redirects=False,
    )


def test_logout_revokes_the_session_and_the_cookie_is_not_the_token(
    module_env: dict[str, str], redis_client: redis.Redis, write_token_api: ServeProcess
) -> None:
    api = ServeProcess({**module_env, "STRATEGYQ_API_TOKENS": TWO_TOKENS}).start()
    try:
        with httpx.Client(base_url=api.url, timeout=30) as browser:
            logged_in = _login(browser, "w-secret")
            assert logged_in.status_code == 303
            cookie = logged_in.cookies["strategyq_session"]
            assert "w-secret" not in cookie and len(cookie) >= 40
            set_cookie = logged_in.headers["set-cookie"].lower()
            assert "httponly" in set_cookie and "samesite=strict" in set_cookie
            assert browser.get("/v1/queue").status_code == 200
            # A copy of the cookie (another tab, a stolen one) works until the logout.
            with httpx.Client(base_url=api.url, timeout=30) as copy:
                copy.cookies.set("strategyq_session", cookie)
                assert copy.get("/v1/queue").status_code == 200
                logout = browser.post("/logout", data={"csrf": browser.cookies["strategyq_csrf"]})
                assert logout.status_code == 303 and logout.headers["location"] == "/login"
                assert copy.get("/v1/queue").status_code == 401
                assert copy.get("/", follow_redirects=False).status_code == 303
        assert redis_client.keys("strategyq:session:*") == []
        # A token taken out of the configuration ends the sessions it opened: a session of
        # r-secret, shown to an API whose configuration no longer has that token.
        with httpx.Client(base_url=api.url, timeout=30) as browser:
            cookie = _login(browser, "r-secret").cookies["strategyq_session"]
    finally:
        api.stop()
    with httpx.Client(timeout=30) as browser:
        reply = browser.get(
            write_token_api.url + "/v1/queue", headers={"Cookie": f"strategyq_session={cookie}"}
        )
        assert reply.status_code == 401


def test_cookies_are_secure_behind_a_tls_proxy(module_env: dict[str, str]) -> None:
    api = ServeProcess(
        {**module_env, "STRATEGYQ_API_TOKENS": WRITE_TOKEN},
        "--proxy-headers",
        "--forwarded-allow-ips",
        "127.0.0.1",
    ).start()
    try:
        with httpx.Client(base_url=api.url, timeout=30) as proxy:
            https = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.9"}
            form = proxy.get("/login", headers=https)
            assert "secure" in form.headers["set-cookie"].lower()
            logged_in = _login(proxy, "w-secret", **https)
            assert logged_in.status_code == 303
            assert "secure" in logged_in.headers["set-cookie"].lower()
            plain = proxy.get("/login")
            assert "secure" not in plain.headers["set-cookie"].lower()
    finally:
        api.stop()
