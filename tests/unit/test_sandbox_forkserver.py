"""The corpus again, through the fork server the workers use.

Children here are forked by a separate host process (as in production, where
the executor's sandbox host forks them); the source travels straight to the
child and the answer straight back. Every escape must fail the same way, with
the same side-effect checks, and failures must still be classified from the
exit status that the host reports.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from strategyq import errors
from strategyq.sandbox import forkclient
from strategyq.sandbox.forkclient import ForkClient
from strategyq.settings import SandboxLimits
from tests.unit.sandbox_corpus import CASES, Case
from tests.unit.sandbox_traps import WARM_WORKER, Traps, assert_no_side_effects, prepare

pytestmark = WARM_WORKER
LIMITS = SandboxLimits(time_limit_s=5, memory_mb=512, answer_max_bytes=1 << 20)

HOST = """
import socket, sys
from strategyq.sandbox import host
from strategyq.sandbox.warm import warm_frame
frame = warm_frame()
sock = socket.socket(fileno=int(sys.argv[1]))
from strategyq.sandbox.policy import libraries_from_env
servers = host.start_servers(libraries_from_env())
sock.send(b'{"ready": true}')
load = lambda request: (frame, {"symbols": request["symbols"]})
host.serve(sock, load, servers, cache_bytes=1 << 26)
"""


@pytest.fixture(scope="module")
def client() -> Iterator[ForkClient]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    host = subprocess.Popen(
        [sys.executable, "-c", HOST, str(theirs.fileno())],
        pass_fds=(theirs.fileno(),),
        env={**os.environ, "REDIS_PASSWORD": "host-env-secret-123"},
    )
    theirs.close()
    assert ours.recv(1024) == b'{"ready": true}'
    try:
        yield ForkClient(ours)
    finally:
        ours.close()
        assert host.wait(10) == 0


def _outcome(client: ForkClient, code: str, check_policy: bool) -> tuple[str, str]:
    try:
        value, meta = client.run(code, {"symbols": ["X"]}, LIMITS, check_policy=check_policy)
    except errors.SandboxError as exc:
        return exc.error_type, str(exc)
    assert meta == {"symbols": ["X"]}
    return "ok", json.dumps(value)


@pytest.mark.parametrize("case", CASES, ids=[f"c{c.threat}-{c.name}" for c in CASES])
@pytest.mark.parametrize("check_policy", [True, False], ids=["policy", "no-policy"])
def test_escape_through_the_fork_server(
    client: ForkClient, traps: Traps, case: Case, check_policy: bool
) -> None:
    kind, text = _outcome(client, prepare(case, traps), check_policy)
    assert kind in (case.on if check_policy else case.off), text
    assert_no_side_effects(traps, text)
    assert "host-env-secret-123" not in text


def test_legitimate_strategy(client: ForkClient) -> None:
    code = "def s(df):\n    return [{'ticker': str(df['ticker'].iloc[0]), 'n': len(df)}]\n"
    value, _ = client.run(code, {"symbols": ["X"]}, LIMITS)
    assert value[0]["n"] > 0


@pytest.mark.parametrize(
    ("code", "error_type"),
    [
        ("def s(df):\n    while True:\n        pass\n", "timeout"),
        ("def s(df):\n    x = bytearray(2 * 1024 ** 3)\n    return []\n", "memory"),
        ("import os\ndef s(df):\n    os.fork()\n    return []\n", "prohibited_operation"),
        ("def s(df):\n    return 1 / 0\n", "strategy_error"),
        ("import os\ndef s(df):\n    return []\n", "policy"),
    ],
    ids=["cpu", "memory", "fork", "raises", "policy"],
)
def test_failures_are_classified(client: ForkClient, code: str, error_type: str) -> None:
    limits = SandboxLimits(time_limit_s=1, memory_mb=256)
    with pytest.raises(errors.SandboxError) as info:
        client.run(code, {"symbols": ["X"]}, limits, check_policy=error_type == "policy")
    assert info.value.error_type == error_type, str(info.value)


def test_cancel(client: ForkClient) -> None:
    read_fd, write_fd = os.pipe()
    os.write(write_fd, b"c")
    try:
        with pytest.raises(errors.TaskCancelled):
            client.run("def s(df):\n    while True:\n        pass\n", {"symbols": []}, LIMITS,
                       cancel_fd=read_fd)  # fmt: skip
    finally:
        os.close(read_fd)
        os.close(write_fd)
    value, _ = client.run("def s(df):\n    return []\n", {"symbols": []}, LIMITS)
    assert value == []


def test_a_repeated_source_is_checked_once_and_a_bad_one_every_time(client: ForkClient) -> None:
    code = "def s(df):\n    return [{'ticker': 'X', 'run': 1}]\n"
    forkclient.checked_program.cache_clear()
    for _ in range(3):
        value, _ = client.run(code, {"symbols": ["X"]}, LIMITS)
        assert value == [{"ticker": "X", "run": 1}]
    info = forkclient.checked_program.cache_info()
    assert (info.misses, info.hits) == (1, 2)
    bad = "import os\ndef s(df):\n    return os.listdir('/')\n"
    for _ in range(2):
        with pytest.raises(errors.PolicyError):
            client.run(bad, {"symbols": ["X"]}, LIMITS)
    assert forkclient.checked_program.cache_info().currsize == 1
