"""Every escape attempt in the corpus, with and without the policy check.

Each run must end as the case allows, and the side effect must not have
happened: the canary's secret and the parent's REDIS_PASSWORD appear in
neither result nor error, no marker file exists, the canary is unchanged, the
TCP listener saw no connection, and the parent's own socket received nothing.
"""

from __future__ import annotations

import json
import os

import pytest

from strategyq import errors
from strategyq.sandbox import run
from strategyq.sandbox.warm import warm_frame
from strategyq.settings import SandboxLimits
from tests.unit.sandbox_corpus import CASES as ALL_CASES
from tests.unit.sandbox_corpus import Case
from tests.unit.sandbox_traps import WARM_WORKER, Traps, assert_no_side_effects, prepare

# What a child of sandbox.run (a copy of this test process) can be asked; the fork
# server's children get every case (test_sandbox_forkserver.py).
CASES = [c for c in ALL_CASES if not c.fork_server_only]
pytestmark = WARM_WORKER
LIMITS = SandboxLimits(time_limit_s=5, memory_mb=512, answer_max_bytes=1 << 20)


def _outcome(code: str, check_policy: bool) -> tuple[str, str]:
    try:
        value = run(code, warm_frame(), LIMITS, check_policy=check_policy)
    except errors.SandboxError as exc:
        return exc.error_type, str(exc)
    return "ok", json.dumps(value)


@pytest.mark.parametrize("case", CASES, ids=[f"c{c.threat}-{c.name}" for c in CASES])
def test_escape_with_policy(case: Case, traps: Traps) -> None:
    kind, text = _outcome(prepare(case, traps), check_policy=True)
    assert kind in case.on, text
    if kind == "policy":
        assert text.startswith("Security validation failed: ")
        assert "line" in text or "strategy" in text
    assert_no_side_effects(traps, text)


@pytest.mark.parametrize("case", CASES, ids=[f"c{c.threat}-{c.name}" for c in CASES])
def test_escape_without_policy(case: Case, traps: Traps) -> None:
    kind, text = _outcome(prepare(case, traps), check_policy=False)
    assert kind in case.off, text
    assert_no_side_effects(traps, text)


def test_corpus_covers_every_threat_class() -> None:
    from tests.integration import test_producer_acl
    from tests.unit.test_sandbox_bombs import BOMBS

    classes = {c.threat for c in ALL_CASES} | {8 for _ in BOMBS}
    # Class 15 (forged queue messages) is not a strategy: test_producer_acl pushes them.
    assert test_producer_acl.test_a_chunk_pushed_by_a_producer_never_runs_as_another_tasks_chunk
    assert classes | {15} == set(range(1, 16))
    assert len(ALL_CASES) + len(BOMBS) >= 60


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
    value = run(prepare(case, traps), warm_frame(), LIMITS, check_policy=False)
    assert value == [{"x": ["PermissionError"]}]


def test_raw_socket_call_is_refused(traps: Traps) -> None:
    case = next(c for c in CASES if c.name == "connect_raw_libc")
    value = run(prepare(case, traps), warm_frame(), LIMITS, check_policy=False)
    assert value == [{"fd": -1, "errno": 1}]


def test_ptrace_of_parent_is_refused(traps: Traps) -> None:
    case = next(c for c in CASES if c.name == "ptrace_parent")
    value = run(prepare(case, traps), warm_frame(), LIMITS, check_policy=False)
    assert value == [{"rc": -1, "errno": 1}]


def test_inherited_descriptors_are_closed(traps: Traps) -> None:
    case = next(c for c in CASES if c.name == "inherited_sockets")
    value = run(prepare(case, traps), warm_frame(), LIMITS, check_policy=False)
    # Only /dev/null on 0-2 and the result pipe on 3 are open.
    assert value == [{"x": [0, 1, 2, 3]}]
