"""Every escape attempt in the corpus, with and without the policy check.

Each run must end as the case allows, and the side effect must not have
happened: the canary's secret and the parent's REDIS_PASSWORD appear in
neither result nor error, no marker file exists, the canary is unchanged, the
TCP listener saw no connection, and the parent's own socket received nothing.
"""

from __future__ import annotations

import json
import os
import secrets
import select
import socket
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from strategyq import errors
from strategyq.sandbox import run, warm_up
from strategyq.sandbox.warm import warm_frame
from strategyq.settings import SandboxLimits
from tests.unit.sandbox_corpus import CASES, Case

LIMITS = SandboxLimits(time_limit_s=5, memory_mb=512, result_max_bytes=1 << 20)


@dataclass
class Traps:
    canary: Path
    canary_secret: str
    canary_mode: int
    marker: Path
    listener: socket.socket
    port: int
    held_server_side: socket.socket
    env_secret: str


@pytest.fixture(scope="module")
def warmed() -> None:
    warm_up()


@pytest.fixture
def traps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, warmed: None) -> Iterator[Traps]:
    canary_secret = "canary-" + secrets.token_hex(16)
    canary = tmp_path / "canary.txt"
    canary.write_text(canary_secret)
    env_secret = "redis-" + secrets.token_hex(16)
    monkeypatch.setenv("REDIS_PASSWORD", env_secret)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", env_secret)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    # A connection the parent holds open, like a worker's Redis socket.
    held_server = socket.socket()
    held_server.bind(("127.0.0.1", 0))
    held_server.listen(1)
    held_client = socket.create_connection(held_server.getsockname())
    held_server_side, _ = held_server.accept()
    held_server_side.setblocking(False)
    try:
        yield Traps(
            canary=canary,
            canary_secret=canary_secret,
            canary_mode=stat.S_IMODE(canary.stat().st_mode),
            marker=tmp_path / "marker",
            listener=listener,
            port=listener.getsockname()[1],
            held_server_side=held_server_side,
            env_secret=env_secret,
        )
    finally:
        for sock in (listener, held_server, held_client, held_server_side):
            sock.close()


def _prepare(case: Case, traps: Traps) -> str:
    return (
        case.code.replace("CANARY", str(traps.canary))
        .replace("MARKER", str(traps.marker))
        .replace("PORT", str(traps.port))
    )


def _outcome(code: str, check_policy: bool) -> tuple[str, str]:
    try:
        value = run(code, warm_frame(), LIMITS, check_policy=check_policy)
    except errors.SandboxError as exc:
        return exc.error_type, str(exc)
    return "ok", json.dumps(value)


def assert_no_side_effects(traps: Traps, text: str) -> None:
    assert traps.canary_secret not in text
    assert traps.env_secret not in text
    assert not traps.marker.exists(), "a file was created outside the sandbox"
    assert traps.canary.read_text() == traps.canary_secret
    assert stat.S_IMODE(traps.canary.stat().st_mode) == traps.canary_mode
    readable, _, _ = select.select([traps.listener], [], [], 0)
    assert not readable, "the TCP listener received a connection"
    with pytest.raises(BlockingIOError):
        traps.held_server_side.recv(1024)


@pytest.mark.parametrize("case", CASES, ids=[f"c{c.threat}-{c.name}" for c in CASES])
def test_escape_with_policy(case: Case, traps: Traps) -> None:
    kind, text = _outcome(_prepare(case, traps), check_policy=True)
    assert kind in case.on, text
    if kind == "policy":
        assert text.startswith("Security validation failed: ")
        assert "line" in text or "strategy" in text
    assert_no_side_effects(traps, text)


@pytest.mark.parametrize("case", CASES, ids=[f"c{c.threat}-{c.name}" for c in CASES])
def test_escape_without_policy(case: Case, traps: Traps) -> None:
    kind, text = _outcome(_prepare(case, traps), check_policy=False)
    assert kind in case.off, text
    assert_no_side_effects(traps, text)


def test_corpus_covers_every_threat_class() -> None:
    from tests.unit.test_sandbox_bombs import BOMBS

    classes = {c.threat for c in CASES} | {8 for _ in BOMBS}
    assert classes == set(range(1, 10))
    assert len(CASES) + len(BOMBS) >= 60


def test_environment_is_empty_in_child(traps: Traps) -> None:
    code = "import os\ndef strategy(df):\n    return [{'env': dict(os.environ)}]\n"
    assert run(code, warm_frame(), LIMITS, check_policy=False) == [{"env": {}}]
    assert os.environ["REDIS_PASSWORD"] == traps.env_secret


def test_no_data_survives_between_runs(traps: Traps) -> None:
    plant = (
        "import pandas\ndef strategy(df):\n"
        "    pandas.left_behind = 'task-one-data'\n    df.attrs['x'] = 1\n    return []\n"
    )
    look = (
        "import pandas\ndef strategy(df):\n"
        "    return [{'seen': str(getattr(pandas, 'left_behind', None)), 'attrs': df.attrs}]\n"
    )
    frame = warm_frame()
    assert run(plant, frame, LIMITS, check_policy=False) == []
    assert run(look, frame, LIMITS, check_policy=False) == [{"seen": "None", "attrs": {}}]
    assert frame.attrs == {}


def test_child_thread_is_jailed_too(traps: Traps) -> None:
    case = next(c for c in CASES if c.name == "thread_is_also_jailed")
    value = run(_prepare(case, traps), warm_frame(), LIMITS, check_policy=False)
    assert value == [{"x": ["PermissionError"]}]


def test_raw_socket_call_is_refused(traps: Traps) -> None:
    case = next(c for c in CASES if c.name == "connect_raw_libc")
    value = run(_prepare(case, traps), warm_frame(), LIMITS, check_policy=False)
    assert value == [{"fd": -1, "errno": 1}]


def test_ptrace_of_parent_is_refused(traps: Traps) -> None:
    case = next(c for c in CASES if c.name == "ptrace_parent")
    value = run(_prepare(case, traps), warm_frame(), LIMITS, check_policy=False)
    assert value == [{"rc": -1, "errno": 1}]


def test_inherited_descriptors_are_closed(traps: Traps) -> None:
    case = next(c for c in CASES if c.name == "inherited_sockets")
    value = run(_prepare(case, traps), warm_frame(), LIMITS, check_policy=False)
    # Only /dev/null on 0-2 and the result pipe on 3 are open.
    assert value == [{"x": [0, 1, 2, 3]}]
