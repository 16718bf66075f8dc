"""Strategies with parameters: ``f(df, params)``, and several calls in one child."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from strategyq import errors
from strategyq.sandbox import checker
from strategyq.sandbox.forkclient import ForkClient
from strategyq.settings import SandboxLimits

LIMITS = SandboxLimits(time_limit_s=10, memory_mb=512, answer_max_bytes=1 << 20)

HOST = """
import socket, sys
import pandas as pd
from strategyq.sandbox import host
frame = pd.DataFrame({"ticker": ["A"] * 5, "date": pd.date_range("2024-01-01", periods=5),
                      "close": [1.0, 2.0, 3.0, 4.0, 5.0]})
sock = socket.socket(fileno=int(sys.argv[1]))
from strategyq.sandbox.policy import libraries_from_env
servers = host.start_servers(libraries_from_env())
sock.send(b'{"ready": true}')
host.serve(sock, lambda request: (frame, {}), servers, cache_bytes=1 << 26)
"""


@pytest.fixture(scope="module")
def client() -> Iterator[ForkClient]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    host = subprocess.Popen(
        [sys.executable, "-c", HOST, str(theirs.fileno())],
        pass_fds=(theirs.fileno(),),
        # Every strategy here passes the policy and imports no optional library, so
        # each goes to the lean fork server: the full one would only cost its start-up.
        env={**os.environ, "STRATEGYQ_SANDBOX_LIBRARIES": "none"},
    )
    theirs.close()
    assert ours.recv(1024) == b'{"ready": true}'
    try:
        yield ForkClient(ours, spares=False)
    finally:
        ours.close()
        assert host.wait(10) == 0


WITH_PARAMS = """
def sma_strategy(df, params):
    n = params.get("n", 1)
    df["seen"] = len(df)
    return [{"ticker": "A", "n": n, "rows": len(df), "last": float(df["close"].iloc[-1]),
             "cols": len(df.columns)}]
"""


def test_entry_point_may_take_params() -> None:
    report = checker.check(WITH_PARAMS)
    assert report.entry == "sma_strategy" and report.takes_params
    one = checker.check("def s(df):\n    return []\n")
    assert one.entry == "s" and not one.takes_params
    # A second parameter with another name is not an entry point.
    with pytest.raises(errors.PolicyError, match="no strategy function"):
        checker.check("def s(df, x):\n    return []\n")
    # A helper taking params does not compete with the entry point.
    both = (
        "def _h(df, params):\n    return []\ndef main_strategy(df, params=None):\n    return []\n"
    )
    assert checker.check(both).entry == "main_strategy"


def test_params_reach_the_strategy(client: ForkClient) -> None:
    out, _ = client.run(WITH_PARAMS, {"k": 1}, LIMITS, params={"n": 7})
    assert out == [{"ticker": "A", "n": 7, "rows": 5, "last": 5.0, "cols": 4}]
    # No params at all: an empty dict.
    out, _ = client.run(WITH_PARAMS, {"k": 1}, LIMITS)
    assert out[0]["n"] == 1


def test_one_argument_form_keeps_working(client: ForkClient) -> None:
    out, _ = client.run("def s(df):\n    return [{'ticker': 'A', 'n': len(df)}]\n", {}, LIMITS)
    assert out == [{"ticker": "A", "n": 5}]


def test_runs_share_one_child_and_never_see_each_others_changes(client: ForkClient) -> None:
    runs = [{"params": {"n": 1}}, {"params": {"n": 2}, "until": "2024-01-03"}, {"params": {"n": 3}}]
    out, _ = client.run(WITH_PARAMS, {"k": 2}, LIMITS, runs=runs)
    assert [r[0]["n"] for r in out] == [1, 2, 3]
    # The column the strategy adds is never there when the next call starts.
    assert [r[0]["cols"] for r in out] == [4, 4, 4]
    # ``until`` cuts the frame after that date.
    assert [r[0]["rows"] for r in out] == [5, 3, 5]
    assert out[1][0]["last"] == 3.0


def test_an_error_in_one_run_names_its_params(client: ForkClient) -> None:
    code = "def s(df, params):\n    return [{'ticker': 'A', 'x': 1 / params['d']}]\n"
    with pytest.raises(
        errors.StrategyFailed, match=r"(?s)with params \{'d': 0\}.*ZeroDivisionError"
    ):
        client.run(code, {}, LIMITS, runs=[{"params": {"d": 1}}, {"params": {"d": 0}}])


def test_a_dataframe_returned_by_runs_arrives_as_a_single_run_sends_it(
    client: ForkClient,
) -> None:
    code = (
        "def s(df, params):\n"
        "    out = df[['ticker', 'date', 'close']].copy()\n"
        "    out['entry'] = out['close'] > params['above']\n"
        "    out['n'] = 1\n"
        "    out['when'] = out['date']\n"
        "    return out\n"
    )
    single, _ = client.run(code, {}, LIMITS, params={"above": 2.0})
    (many, other), _ = client.run(
        code, {}, LIMITS, runs=[{"params": {"above": 2.0}}, {"params": {"above": 9.0}}]
    )
    assert many == single
    assert single[0] == {
        "ticker": "A", "date": "2024-01-01T00:00:00", "close": 1.0, "entry": False, "n": 1,
        "when": "2024-01-01T00:00:00",
    }  # fmt: skip
    assert [r["entry"] for r in other] == [False] * 5
