"""One check behind ``strategyq check``, ``POST /v1/check`` and ``check_strategy``; producers
run it before queueing, so a syntax error never reaches a worker."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import orjson
import pytest
import redis

from strategyq import add_backtest_task, check_strategy
from strategyq.check import StrategyRejected
from tests.cli_inprocess import strategyq
from tests.integration.api.conftest import backtest_body

PROBLEM = "application/problem+json"

BAD = (
    "import os\nimport pandas_ta\nimport numpy\n"
    "def strategy(df):\n"
    "    x = pd.read_csv('data.csv')\n"
    "    y = ().__class__.__subclasses__()\n"
    "    return eval('[]')\n"
)
GOOD = (
    "from dataclasses import dataclass\nimport talib\n\n"
    "@dataclass\nclass Rsi:\n    n: int = 14\n\n"
    "    def run(self, df):\n        return []\n\n"
    "def strategy(df, params):\n    return Rsi(params.get('n', 14)).run(df)\n"
)
SYNTAX = "def strategy(df):\n    return [x for x in\n"


def _cli(tmp_path: Path, code: str) -> tuple[int, dict[str, object]]:
    # In this process: `check` reads a file and prints (test_the_cli_prints_findings_and_
    # exits_1 runs the real executable).
    path = tmp_path / "strategy.py"
    path.write_text(code)
    done = strategyq("check", str(path), "--json")
    return done.returncode, orjson.loads(done.stdout)


@pytest.mark.parametrize("code", [BAD, GOOD, SYNTAX], ids=["bad", "good", "syntax"])
def test_cli_api_and_function_answer_the_same(
    http: httpx.Client, tmp_path: Path, code: str
) -> None:
    local = check_strategy(code).as_dict()
    status, cli = _cli(tmp_path, code)
    reply = http.post("/v1/check", json={"strategy_code": code})
    assert reply.status_code == 200, reply.text
    assert reply.json() == cli == local
    assert status == (0 if local["ok"] else 1)


def test_every_finding_with_line_fix_and_entry() -> None:
    result = check_strategy(BAD)
    assert result.error_type == "policy" and result.entry == "strategy"
    assert [(f["kind"], f["line"]) for f in result.findings] == [
        ("policy", 1), ("module_unavailable", 2), ("policy", 5), ("policy", 6), ("policy", 6),
        ("policy", 7),
    ]  # fmt: skip
    read_csv = result.findings[2]
    assert read_csv["fix"].startswith("pass small tables in `params`")
    assert "`talib`" in str(result.findings[1]["fix"])
    good = check_strategy(GOOD)
    assert good.ok and good.entry == "strategy" and good.takes_params
    assert good.imports == ["dataclasses", "talib"]


def test_the_cli_prints_findings_and_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "s.py"
    path.write_text(BAD)
    done = subprocess.run([sys.executable, "-m", "strategyq", "check", str(path)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 1
    assert "6 findings (policy)" in done.stderr
    assert "line 5: 'read_csv' with a path reads a file" in done.stderr
    assert "a run would call strategy()" in done.stderr
    path.write_text(GOOD)
    done = subprocess.run([sys.executable, "-m", "strategyq", "check", str(path)],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0 and "ok: a run calls strategy(df, params)" in done.stdout


def test_a_producer_reports_a_syntax_error_at_once(redis_client: redis.Redis) -> None:
    with pytest.raises(StrategyRejected) as info:
        add_backtest_task(redis_client, "check-syntax", SYNTAX, ["AAPL"], "2020-01-01",
                          "2020-12-31")  # fmt: skip
    assert info.value.error_type == "syntax"
    assert "Security validation" not in str(info.value)
    assert "syntax error on line 2: '[' was never closed" in str(info.value)
    assert str(info.value).endswith("return [x for x in\n           ^")
    assert redis_client.llen("strategy_queue") == 0
    with pytest.raises(StrategyRejected) as refused:
        add_backtest_task(redis_client, "check-policy", BAD, ["AAPL"], "2020-01-01",
                          "2020-12-31")  # fmt: skip
    assert refused.value.error_type == "policy" and len(refused.value.findings) == 6
    assert redis_client.llen("strategy_queue") == 0


def test_http_submit_reports_a_syntax_error_as_one(
    http: httpx.Client, redis_client: redis.Redis
) -> None:
    body = backtest_body()
    body["args"]["strategy_code"] = SYNTAX
    reply = http.post("/v1/tasks", json=body)
    assert reply.status_code == 422
    assert reply.headers["content-type"] == PROBLEM
    detail = reply.json()["detail"]
    assert "syntax error on line 2" in detail and "^" in detail
    assert "Security validation" not in detail
    assert redis_client.llen("strategy_queue") == 0
