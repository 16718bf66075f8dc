"""Resource bombs end as timeout, memory, bad_result or policy, within the deadline,
and leave the parent healthy."""

from __future__ import annotations

import time
from dataclasses import dataclass

import pytest

from strategyq import errors
from strategyq.sandbox import run, warm_up
from strategyq.sandbox.warm import warm_frame
from strategyq.settings import SandboxLimits
from tests.unit.sandbox_traps import WARM_WORKER

pytestmark = WARM_WORKER
LIMITS = SandboxLimits(time_limit_s=1.0, memory_mb=384, answer_max_bytes=1 << 20)
MARGIN_S = 3.0
"""Slack on top of the time limit for fork, kill and reap on a busy 2-core machine."""
UNTIMED = SandboxLimits(time_limit_s=5.0, memory_mb=384, answer_max_bytes=1 << 20)
"""For bombs that must end otherwise than by the clock (memory, bad result, policy): the
tests run in parallel, and a share of a busy CPU must not turn their outcome into a
timeout. They are still held to ``LIMITS``' time plus the margin."""
CLOCKED = SandboxLimits(time_limit_s=0.5, memory_mb=384, answer_max_bytes=1 << 20)
"""For bombs that may end by the clock: half a second of wall clock stops a spinning child
as surely as a second does (the RLIMIT_CPU backstop is the same 2 s for both), and most of
these bombs spin on a CPU until their limit. They are held to ``LIMITS``' time plus the
margin, as every bomb is."""


@dataclass(frozen=True)
class Bomb:
    name: str
    code: str
    on: frozenset[str]
    off: frozenset[str]


def _b(name: str, body: str, on: set[str], off: set[str] | None = None) -> Bomb:
    lines = "\n".join("    " + line for line in body.strip("\n").splitlines())
    code = f"def strategy(df):\n{lines}\n"
    return Bomb(name, code, frozenset(on), frozenset(off if off is not None else on))


TIMEOUT = {"timeout"}
MEMORY = {"memory"}
BAD = {"bad_result"}
POLICY = {"policy"}

BOMBS: list[Bomb] = [
    _b("cpu_loop", "while True:\n    pass", TIMEOUT),
    # `time` is importable (time.sleep works within the limits): the wall clock stops it.
    _b("sleep", "import time\ntime.sleep(60)", TIMEOUT),
    _b("busy_pandas", "while True:\n    df = pd.concat([df, df]).tail(1000)", TIMEOUT),
    _b("list_alloc", "x = [0] * (10 ** 10)\nreturn []", MEMORY),
    _b("numpy_alloc", "x = np.ones(10 ** 10)\nreturn []", MEMORY),
    _b("string_alloc", "x = 'a' * (10 ** 10)\nreturn []", MEMORY),
    _b("growing_list", "x = []\nwhile True:\n    x.append([0] * 10000)", MEMORY | TIMEOUT),
    _b("big_power", "return [{'x': 10 ** 10 ** 9}]", TIMEOUT | MEMORY),
    _b(
        "catastrophic_regex",
        "s = pd.Series(['a' * 40 + 'b'], dtype='object')\n"
        "return [{'x': bool(s.str.match('(a+)+$')[0])}]",
        TIMEOUT,
    ),
    _b("deep_recursion", "def f(n):\n    return f(n + 1)\nreturn f(0)", MEMORY),
    _b(
        "deep_recursion_raised_limit",
        "import sys\nsys.setrecursionlimit(10 ** 7)\n"
        "def f(n):\n    return f(n + 1) + 1\nreturn f(0)",
        POLICY,
        MEMORY | TIMEOUT,
    ),
    _b(
        "fork_spam",
        "import os\nwhile True:\n    os.fork()",
        POLICY,
        {"prohibited_operation"},
    ),
    _b(
        "thread_spam",
        "import threading, time\nwhile True:\n"
        "    threading.Thread(target=time.sleep, args=(30,)).start()",
        POLICY,
        {"strategy_error", "memory", "timeout"},
    ),
    _b("huge_output", "return [{'x': 'a' * 100000} for _ in range(100)]", BAD),
    _b("many_instances", "return [{'i': i} for i in range(3 * 10 ** 5)]", BAD | MEMORY),
    _b(
        "nested_list_result", "x = []\nfor _ in range(100000):\n    x = [x]\nreturn [{'x': x}]", BAD
    ),
    _b("nested_dict_result", "x = {}\nfor _ in range(40):\n    x = {'k': x}\nreturn [x]", BAD),
    _b("print_flood", "while True:\n    print('x' * 1000)", TIMEOUT),
    _b("not_a_list", "return 'hello'", BAD),
    _b("list_of_str", "return ['a', 'b']", BAD),
    _b("bytes_value", "return [{'x': b'raw'}]", BAD),
]

PARSER_BOMBS = {
    "nested_parens": "def strategy(df):\n    return " + "(" * 100_000 + ")" * 100_000,
    "unary_chain": "def strategy(df):\n    return " + "-" * 200_000 + "1",
    "long_attribute_chain": "def strategy(df):\n    return df" + ".x" * 200_000,
    "binary_chain": "def strategy(df):\n    return " + "1+" * 200_000 + "1",
    "nul_byte": "def strategy(df):\n    return []\x00",
    "huge_source": "def strategy(df):\n    return []\n" + "# pad\n" * 100_000,
}


@pytest.fixture(scope="module", autouse=True)
def warmed() -> None:
    warm_up()


def _kind(code: str, check_policy: bool, limits: SandboxLimits = LIMITS) -> tuple[str, float]:
    started = time.monotonic()
    try:
        run(code, warm_frame(), limits, check_policy=check_policy)
        kind = "ok"
    except errors.SandboxError as exc:
        kind = exc.error_type
    return kind, time.monotonic() - started


@pytest.mark.parametrize("bomb", BOMBS, ids=[b.name for b in BOMBS])
@pytest.mark.parametrize("check_policy", [True, False], ids=["policy", "raw"])
def test_bomb_is_contained(bomb: Bomb, check_policy: bool) -> None:
    expected = bomb.on if check_policy else bomb.off
    kind, elapsed = _kind(bomb.code, check_policy, CLOCKED if "timeout" in expected else UNTIMED)
    assert kind in expected
    assert elapsed < LIMITS.time_limit_s + MARGIN_S


@pytest.mark.parametrize("name", sorted(PARSER_BOMBS))
def test_parser_bomb_is_refused_by_policy(name: str) -> None:
    with pytest.raises(errors.PolicyError, match=r"^Security validation failed: "):
        run(PARSER_BOMBS[name], warm_frame(), LIMITS)


@pytest.mark.parametrize("name", ["unary_chain", "binary_chain", "long_attribute_chain"])
def test_parser_bomb_only_hurts_the_child(name: str) -> None:
    kind, elapsed = _kind(PARSER_BOMBS[name], check_policy=False)
    assert kind in {"policy", "memory", "strategy_error"}
    assert elapsed < LIMITS.time_limit_s + MARGIN_S


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


def test_parent_stays_healthy_after_bombs() -> None:
    frame = warm_frame()
    ok = "def strategy(df):\n    return [{'ticker': 'A', 'n': len(df)}]\n"
    assert run(ok, frame, LIMITS) == [{"ticker": "A", "n": len(frame)}]
    before = _rss_kib()
    memory_bombs = [b for b in BOMBS if b.name in {"list_alloc", "numpy_alloc", "huge_output"}]
    for _ in range(5):
        for bomb in memory_bombs:
            _kind(bomb.code, check_policy=True)
    grown_mib = (_rss_kib() - before) / 1024
    assert grown_mib < 16, f"parent RSS grew by {grown_mib:.1f} MiB"
    assert run(ok, frame, LIMITS) == [{"ticker": "A", "n": len(frame)}]
