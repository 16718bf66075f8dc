"""Every filter of ``GET /v1/runs``, ``strategyq runs`` and ``strategyq.archive.runs()`` gives the
same answer, on SQLite and on PostgreSQL, and that answer is the one the filter means."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from typer.testing import CliRunner

from strategyq.archive import runs
from strategyq.archive.record import build, fingerprint
from strategyq.archive.store import Archive
from strategyq.cli import app as cli_app
from tests.integration.api.conftest import ServeProcess, api_env

DAY = 86_400_000
T0 = 1_717_200_000_000  # 2024-06-01T00:00:00Z
V1 = "def s(df):\n    return []\n"
V2 = "def s(df):\n    return [] # v2\n"


def backtest(sharpe: float, ret: float) -> dict[str, Any]:
    metrics = {"sharpe_ratio": sharpe, "total_return": ret, "max_drawdown": -abs(ret) / 2,
               "num_trades": 10, "win_rate": 0.5}  # fmt: skip
    return {"status": "completed", "updated_at": "2024-06-01T00:00:00Z",
            "data": {"success": True, "execution_mode": "backtest",
                     "performance_metrics": metrics}}  # fmt: skip


# (id, type, status, day, name, tags, symbols, code, sharpe, return)
RUNS: list[tuple[Any, ...]] = [
    ("r01", "backtest", "completed", 0, "sma", ["trend"], ["AAPL", "MSFT"], V1, 1.5, 0.20),
    ("r02", "backtest", "completed", 1, "sma", ["trend", "v2"], ["AAPL"], V2, 0.4, 0.05),
    ("r03", "backtest", "completed", 2, "sma", ["v2"], ["MSFT"], V2, 2.1, 0.35),
    ("r04", "backtest", "error", 3, "sma", [], ["AAPL"], V2, None, None),
    ("r05", "screening", "completed", 4, "gaps", ["scan"], ["IBM", "AAPL"], V1, None, None),
    ("r06", "backtest", "completed", 5, None, [], ["GOOG"], V1, -0.3, -0.10),
    ("r07", "sweep", "completed", 6, "grid", ["trend"], ["AAPL"], V1, 1.0, 0.12),
    ("r08", "backtest", "cancelled", 7, None, ["trend"], ["FB"], V2, None, None),
    ("r09", "backtest", "completed", 8, "sma", ["trend"], ["AAPL", "FB"], V1, 1.0, 0.0),
]


def make(row: tuple[Any, ...]) -> Any:
    task_id, kind, status, day, name, tags, symbols, code, sharpe, ret = row
    args: dict[str, Any] = {"strategy_code": code}
    args["universe" if kind == "screening" else "symbols"] = symbols
    if name:
        args["name"] = name
    if tags:
        args["tags"] = tags
    task = {"task_id": task_id, "task_type": kind, "args": args}
    if status == "completed" and kind == "backtest":
        result = backtest(sharpe, ret)
    elif kind == "sweep":
        result = {"status": "completed", "data": {"execution_mode": "sweep", "best": {
            "metrics": backtest(sharpe, ret)["data"]["performance_metrics"]}}}  # fmt: skip
    elif status == "completed":
        result = {"status": "completed", "data": {"execution_mode": "screening"}}
    elif status == "error":
        result = {"status": "error", "data": {"error": "boom", "error_type": "strategy_error"}}
    else:
        result = {"status": "cancelled", "data": {}}
    return build(task_id, orjson.dumps(result), orjson.dumps(task), finished_ms=T0 + day * DAY)


@pytest.fixture(scope="module")
def filled(module_archive_url: str) -> Iterator[str]:
    """The runs, written once per backend: every test here only reads them."""
    archive = Archive.open(module_archive_url)
    try:
        archive.write([make(r) for r in RUNS])
    finally:
        archive.close()
    yield module_archive_url


def expected(pred: Callable[[tuple[Any, ...]], bool]) -> list[str]:
    """The ids the filter means, newest first."""
    return [r[0] for r in sorted(RUNS, key=lambda r: -r[3]) if pred(r)]


CASES: list[tuple[dict[str, Any], Callable[[tuple[Any, ...]], bool]]] = [
    ({}, lambda r: True),
    ({"name": "sma"}, lambda r: r[4] == "sma"),
    ({"tag": ["trend"]}, lambda r: "trend" in r[5]),
    ({"tag": ["trend", "v2"]}, lambda r: {"trend", "v2"} <= set(r[5])),
    ({"fingerprint": fingerprint(V2)}, lambda r: r[7] == V2),
    ({"symbol": "aapl"}, lambda r: "AAPL" in r[6]),
    ({"since": "2024-06-03"}, lambda r: r[3] >= 2),
    ({"until": "2024-06-03"}, lambda r: r[3] <= 2),
    ({"since": "2024-06-02", "until": "2024-06-05T00:00:00Z"}, lambda r: 1 <= r[3] <= 4),
    ({"status": "error"}, lambda r: r[2] == "error"),
    ({"task_type": "sweep"}, lambda r: r[1] == "sweep"),
    ({"metric": ["sharpe_ratio>1"]}, lambda r: r[8] is not None and r[8] > 1),
    (
        {"metric": ["sharpe_ratio>=1", "total_return<0.3"]},
        lambda r: r[8] is not None and r[8] >= 1 and r[9] < 0.3,
    ),
    (
        {"metric": ["total_return<=0"], "name": "sma"},
        lambda r: r[9] is not None and r[9] <= 0 and r[4] == "sma",
    ),
]


def api_ids(client: httpx.Client, filters: dict[str, Any], limit: int = 50) -> list[str]:
    got: list[str] = []
    token: str | None = None
    while True:
        params: dict[str, Any] = {**filters, "limit": limit}
        if token:
            params["next"] = token
        answer = client.get("/v1/runs", params=params)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        got += [r["task_id"] for r in body["runs"]]
        token = body["next"]
        if token is None:
            return got


def cli_ids(url: str, filters: dict[str, Any], limit: int = 50) -> list[str]:
    argv = ["runs", "--json", "--limit", str(limit)]
    for key, value in filters.items():
        option = "--type" if key == "task_type" else "--" + key
        for item in value if isinstance(value, list) else [value]:
            argv += [option, item]
    got: list[str] = []
    token: list[str] = []
    while True:
        done = CliRunner().invoke(cli_app, argv + token, env={"STRATEGYQ_ARCHIVE_URL": url})
        assert done.exit_code == 0, done.output
        body = json.loads(done.stdout)
        got += [r["task_id"] for r in body["runs"]]
        if body["next"] is None:
            return got
        token = ["--next", body["next"]]


@pytest.fixture(scope="module")
def api(filled: str, redis_url: str, market_home: Path) -> Iterator[httpx.Client]:
    """``strategyq serve`` (a real process) over the filled archive, one per backend for the
    module's tests (they only read it, and ``serve`` costs a second of CPU to start)."""
    proc = ServeProcess(api_env(redis_url, market_home, STRATEGYQ_ARCHIVE_URL=filled)).start()
    try:
        with httpx.Client(base_url=proc.url, timeout=60) as client:
            yield client
    finally:
        proc.stop()


def test_every_filter_answers_the_same_from_api_cli_and_python(
    api: httpx.Client, filled: str
) -> None:
    for filters, pred in CASES:
        want = expected(pred)
        assert want, filters  # every case matches some runs, and not all of them but one
        assert api_ids(api, filters) == want, filters
        assert cli_ids(filled, filters) == want, filters
        frame = runs(url=filled, **filters)
        assert list(frame["task_id"]) == want, filters


def test_pages_chain_to_the_whole_answer(api: httpx.Client, filled: str) -> None:
    want = expected(lambda r: True)
    assert api_ids(api, {}, limit=2) == want
    assert cli_ids(filled, {}, limit=4) == want
    frame = runs(url=filled, tag="trend")
    assert list(frame["task_id"]) == expected(lambda r: "trend" in r[5])
    assert frame.loc[frame["task_id"] == "r01", "sharpe_ratio"].item() == 1.5
    assert frame["finished_at"].dt.tz is not None


def test_bad_filters_are_refused_with_the_fix(api: httpx.Client, filled: str) -> None:
    answer = api.get("/v1/runs", params={"metric": "sharpe>1"})
    assert answer.status_code == 422 and "use one of total_return" in answer.json()["detail"]
    answer = api.get("/v1/runs", params={"since": "last tuesday"})
    assert answer.status_code == 422 and "2024-05-01" in answer.json()["detail"]
    done = CliRunner().invoke(cli_app, ["runs", "--metric", "sharpe_ratio>>1"],
                              env={"STRATEGYQ_ARCHIVE_URL": filled})  # fmt: skip
    assert done.exit_code != 0
    one = api.get("/v1/runs/r01", params={"result": "true"}).json()
    assert one["strategy_code"] == V1 and one["result"]["status"] == "completed"
    assert api.get("/v1/runs/nope").status_code == 404
