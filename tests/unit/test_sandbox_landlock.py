"""Every Landlock ABI from 1 to this kernel's runs tasks through the real lock-down path.

The child is told to use at most ABI n (``landlock_abi_max``), which is what a
kernel of that generation offers: 5.13 (1), 5.19 (2), 6.2 (3), 6.7 (4), 6.10
(5), 6.12 (6), 6.15 (7). Each ABI must run legitimate strategies, pass the
start-up self-check, and still refuse files, other processes and new system
calls (the seccomp allow-list does not depend on the ABI). ABI 0 — no
Landlock — must refuse to run anything.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from strategyq import errors
from strategyq.sandbox import landlock, probe_layers, run
from strategyq.sandbox.warm import warm_frame
from strategyq.settings import SandboxLimits
from tests.unit.sandbox_corpus import CASES
from tests.unit.sandbox_legit import LEGIT
from tests.unit.sandbox_traps import WARM_WORKER, Traps, assert_no_side_effects, prepare

pytestmark = WARM_WORKER
LIMITS = SandboxLimits(time_limit_s=10, memory_mb=512, answer_max_bytes=1 << 20)
KERNEL_ABI = landlock.abi_version()
ABIS = list(range(1, KERNEL_ABI + 1))

# Legitimate cases that need nothing but the tiny warm frame's columns.
SMALL_NAMES = {
    "timestamp_strftime",
    "datetime_strptime",
    "date_today",
    "np_fft",
    "statistics_basic",
}
SMALL_LEGIT = [c for c in LEGIT if c.name in SMALL_NAMES]
HARMLESS = {"ok", "prohibited_operation", "strategy_error", "module_unavailable"}
ATTACKS = [c for c in CASES if c.threat in (9, 10, 11) and c.off <= HARMLESS]


def test_this_kernel_has_landlock() -> None:
    # The suite's machines run 6.x kernels; an older one would skip nothing silently.
    assert KERNEL_ABI >= 1, "this kernel has no Landlock: the ABI tests cannot run"


@pytest.mark.parametrize("abi", ABIS)
def test_self_check_passes_on_every_abi(abi: int, warmed: None) -> None:
    layers = probe_layers(landlock_abi_max=abi)
    assert layers == {
        "landlock": True,
        "landlock_net": abi >= 4,
        "seccomp": True,
        "rlimits": True,
        "no_new_privs": True,
        "canary": True,
    }


def test_self_check_fails_without_landlock(warmed: None) -> None:
    layers = probe_layers(landlock_abi_max=0)
    assert layers["canary"] is False and layers["landlock"] is False


@pytest.mark.parametrize("abi", ABIS)
@pytest.mark.parametrize("check_policy", [True, False], ids=["policy", "no-policy"])
def test_legitimate_strategies_run_on_every_abi(abi: int, check_policy: bool, warmed: None) -> None:
    frame = warm_frame()
    for case in SMALL_LEGIT:
        value = run(case.code.replace("df['returns']", "df['close']"), frame, LIMITS,
                    check_policy=check_policy, landlock_abi_max=abi)  # fmt: skip
        assert value and all("ticker" in row for row in value), (case.name, value)


@pytest.mark.parametrize("abi", ABIS)
def test_attacks_fail_on_every_abi(abi: int, traps: Traps) -> None:
    for case in ATTACKS:
        try:
            value = run(prepare(case, traps), warm_frame(), LIMITS, check_policy=False,
                        landlock_abi_max=abi)  # fmt: skip
            kind, text = "ok", json.dumps(value)
        except errors.SandboxError as exc:
            kind, text = exc.error_type, str(exc)
        assert kind in case.off, (abi, case.name, text)
        assert_no_side_effects(traps, text)


def test_no_landlock_refuses_to_run(warmed: None) -> None:
    with pytest.raises(errors.SandboxUnavailable) as info:
        run("def s(df):\n    return []\n", warm_frame(), LIMITS, landlock_abi_max=0)
    assert "landlock" in str(info.value)


@pytest.mark.parametrize("abi", ABIS)
def test_handled_rights_grow_with_the_abi(abi: int) -> None:
    assert landlock.handled_fs(abi) & ((1 << 13) - 1) == (1 << 13) - 1
    assert bool(landlock.handled_fs(abi) & (1 << 13)) == (abi >= 2)  # refer
    assert bool(landlock.handled_fs(abi) & (1 << 14)) == (abi >= 3)  # truncate
    assert bool(landlock.handled_fs(abi) & (1 << 15)) == (abi >= 5)  # ioctl_dev


@pytest.fixture
def granted_folder(warmed: None) -> Iterator[Path]:
    """A folder granted as a library's is (read only), beside a secret and a look-alike.

    Everything is readable by every user, as an installation is (a child run by root
    has a uid of its own): only Landlock stands between the child and the secret.
    """
    with tempfile.TemporaryDirectory() as name:
        top = Path(name)
        top.chmod(0o755)
        yield from _granted(top)


def _granted(tmp_path: Path) -> Iterator[Path]:
    lib = tmp_path / "lib"
    (lib / "data").mkdir(parents=True)
    (lib / "data" / "table.csv").write_text("a,b\n1,2\n")
    (tmp_path / "secret.txt").write_text(SECRET)
    (tmp_path / "lib.secret").mkdir()
    (tmp_path / "lib.secret" / "s.txt").write_text(SECRET)
    (lib / "data" / "link").symlink_to(tmp_path / "secret.txt")
    before = landlock.readable()
    landlock.grant_reading([*before, str(lib)])
    try:
        yield lib
    finally:
        landlock.grant_reading(before)


SECRET = "not-for-strategies-7f3a"

GRANTED_PROBE = """
import errno, os
LIB = 'LIBDIR'

def probe(df):
    table = open(LIB + '/data/table.csv').read()
    refused = {}
    def attempt(name, call):
        try:
            found = call()
            refused[name] = 'OPENED ' + repr(found)[:80]
        except OSError as e:
            refused[name] = errno.errorcode.get(e.errno, str(e.errno))
    attempt('dotdot', lambda: open(LIB + '/data/../../secret.txt').read())
    attempt('look-alike', lambda: open(LIB + '.secret/s.txt').read())
    attempt('symlink out', lambda: open(LIB + '/data/link').read())
    attempt('list', lambda: os.listdir(LIB + '/data'))
    attempt('write new', lambda: open(LIB + '/data/new.csv', 'w'))
    attempt('write existing', lambda: open(LIB + '/data/table.csv', 'r+'))
    attempt('append', lambda: open(LIB + '/data/table.csv', 'a'))
    attempt('truncate', lambda: os.truncate(LIB + '/data/table.csv', 0))
    attempt('remove', lambda: os.remove(LIB + '/data/table.csv'))
    attempt('rename', lambda: os.rename(LIB + '/data/table.csv', LIB + '/t.csv'))
    attempt('mkdir', lambda: os.mkdir(LIB + '/data/sub'))
    attempt('symlink in', lambda: os.symlink(LIB + '/../secret.txt', LIB + '/data/s'))
    attempt('hard link in', lambda: os.link(LIB + '/../secret.txt', LIB + '/data/h'))
    return [{'ticker': 'X', 'table': table, 'refused': refused}]
"""


@pytest.mark.parametrize("abi", ABIS)
def test_a_granted_folder_is_read_only_and_nothing_beside_it_is_readable(
    abi: int, granted_folder: Path
) -> None:
    code = GRANTED_PROBE.replace("LIBDIR", str(granted_folder))
    value = run(code, warm_frame(), LIMITS, check_policy=False, landlock_abi_max=abi)
    assert value[0]["table"] == "a,b\n1,2\n"
    refused = value[0]["refused"]
    assert SECRET not in json.dumps(value)
    assert set(refused.values()) <= {"EACCES", "EPERM"}, refused
    assert refused["dotdot"] == refused["look-alike"] == refused["symlink out"] == "EACCES"
    assert refused["list"] == "EACCES"  # files can be read, folders not listed
    assert sorted(p.name for p in (granted_folder / "data").iterdir()) == ["link", "table.csv"]
    assert (granted_folder / "data" / "table.csv").read_text() == "a,b\n1,2\n"
    assert sorted(p.name for p in granted_folder.iterdir()) == ["data"]
