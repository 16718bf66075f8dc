"""The per-child thread cap when the worker is not root.

The suite runs as root, where a child takes a uid of its own (see
test_sandbox_isolation.py). Here a real sandbox host is started as ``nobody``
(uid 65534) and the raw-clone thread bomb runs through it: once where the
child can create a user namespace, and once where it cannot (the worker is in
a chroot, where the kernel refuses ``unshare(CLONE_NEWUSER)`` with EPERM), so
each non-root route of ``lockdown.cap_threads`` is exercised. Which route ran
is read back from the child's own ``RLIMIT_NPROC``.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from strategyq.data.synth import write_synthetic
from tests.unit.test_sandbox_isolation import LIMITS, NORMAL, request, thread_bomb

NOBODY = 65534
CAP = 8

# One xdist worker runs both tests, one after the other: RLIMIT_NPROC counts every task of
# the real uid, so while the other test's processes, also nobody's, exit, the user-count
# route's bomb could take their places and start more than the cap it is checked against.
pytestmark = pytest.mark.xdist_group(__name__)
REPO = Path(__file__).resolve().parents[2]

# Run as nobody: a sandbox host it starts on the store in its home, a bomb and a normal
# task. The host runs the lean fork server only (STRATEGYQ_SANDBOX_LIBRARIES=none), which
# then forks every child, the policy-off bomb's too: the thread cap is set in the child
# (lockdown.cap_threads) whichever server forks it, and the library server would only add
# ~2.5 CPU-s of start-up per test. The tasks come in as JSON, made by the test process,
# so that this process imports neither pandas nor the test modules (~0.5 CPU-s).
WORKER = """
import os, socket, subprocess, sys
import orjson
from strategyq.sandbox.forkclient import ForkClient
from strategyq.settings import SandboxLimits, Settings

home, job = sys.argv[1], orjson.loads(sys.argv[2])
ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
env = {"STRATEGYQ_HOME": home, "STRATEGYQ_SANDBOX_LIBRARIES": "none"}
settings = Settings.from_env(env, data_cache_mb=64)
assert settings.sandbox_libraries == (), settings.sandbox_libraries
host = subprocess.Popen(
    [sys.executable, "-m", "strategyq.executor.sandbox_host", str(theirs.fileno()),
     settings.for_child_process().decode()],
    pass_fds=(theirs.fileno(),), env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
)
theirs.close()
ready = orjson.loads(ours.recv(1 << 16))
assert ready["ready"], ready
assert set(ready["servers"]) == {"lean"}, ready
client = ForkClient(ours, spares=False)
limits = SandboxLimits(**job["limits"])
bomb = client.run(job["bomb"], job["request"], limits, check_policy=False)[0][0]
normal = client.run(job["normal"], job["request"], limits)[0][0]
ours.close()
host.wait(30)
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
capabilities = int(status["CapEff"], 16) | int(status["CapPrm"], 16)
print(orjson.dumps({"uid": os.getuid(), "capabilities": capabilities, "bomb": bomb,
                    "normal": normal}).decode())
"""


def job() -> str:
    """The worker's tasks: the raw-clone thread bomb, capped at CAP, and a normal task."""
    limits = dataclasses.replace(LIMITS, time_limit_s=20, max_threads=CAP)
    return orjson.dumps(
        {
            "limits": dataclasses.asdict(limits),
            "request": request(["SYN0001"], "2024-01-02T00:00:00", "2024-06-28T00:00:00"),
            "bomb": thread_bomb(),
            "normal": NORMAL,
        }
    ).decode()


@pytest.fixture()
def home() -> Iterator[Path]:
    # pytest's tmp_path is 0700 under root's directory: nobody needs one it can reach.
    path = Path(tempfile.mkdtemp(prefix="strategyq-nobody-", dir="/tmp"))
    try:
        os.chmod(path, 0o755)
        # The store nobody's host reads, written here and handed over to nobody whole.
        write_synthetic(path / "data", 2, 3, seed=3)
        for folder, _, files in os.walk(path):
            for name in [folder, *(os.path.join(folder, f) for f in files)]:
                os.chown(name, NOBODY, NOBODY)
        yield path
    finally:
        shutil.rmtree(path)


# As root, in a private mount namespace (nothing outside it changes): the interpreter
# may live under /root, which is 0700: then /root is covered by an empty 0755 tmpfs
# with only the interpreter's tree bound back in; then, for the second route, the whole
# tree is bound under the home and the worker chroots into it (the same files at the
# same paths, but its root directory no longer is the mount namespace's, so the
# kernel refuses it a user namespace); then it becomes nobody with no capabilities.
SETUP = """
home=$1 jail=$2 python=$3; shift 3
case "$python" in /root/*)
    interpreter=$(mktemp -d)
    mount --bind "$python" "$interpreter"
    mount -t tmpfs -o mode=755 strategyq-root /root
    mkdir -p "$python"
    mount --move "$interpreter" "$python"
    rmdir "$interpreter"
esac
cd "$PYTHONPATH"
if [ "$jail" = chroot ]; then
    mkdir "$home/root"
    mount --rbind / "$home/root"
    exec chroot "$home/root" sh -c 'cd "$PYTHONPATH" && exec "$@"' - \
        setpriv --reuid=65534 --regid=65534 --clear-groups -- "$@"
fi
exec setpriv --reuid=65534 --regid=65534 --clear-groups -- "$@"
"""


def _nobody_tasks() -> list[str]:
    """The pids of nobody's processes (no other test runs as nobody: this module is one
    xdist group)."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                # The real uid from status: /proc/PID of a non-dumpable process is root's.
                status = (proc / "status").read_text()
            except OSError:
                continue
            uid = next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:"))
            if int(uid) == NOBODY:
                found.append(proc.name)
    return found


def run_as_nobody(home: Path, *, chroot: bool) -> dict[str, object]:
    worker = [sys.executable, "-c", WORKER, str(home), job()]
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(REPO), "HOME": str(home)}
    jail = "chroot" if chroot else "none"
    python = os.path.realpath(sys.base_prefix)
    command = ["unshare", "--mount", "--propagation", "private", "sh", "-ec", SETUP, "-"]
    done = subprocess.run(
        [*command, str(home), jail, python, *worker],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    # The fork server leaves with its host by a parent-death signal, after the command has
    # returned: a nobody task still exiting during the next test's bomb would give that
    # bomb its slot under the per-user limit.
    deadline = time.monotonic() + 30
    while _nobody_tasks() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _nobody_tasks(), "processes of nobody outlived the test"
    answer: dict[str, object] = orjson.loads(done.stdout.strip().splitlines()[-1])
    # Really unprivileged: nobody, and no capability left.
    assert answer["uid"] == NOBODY and answer["capabilities"] == 0, answer
    return answer


def test_a_thread_bomb_stops_at_the_cap_in_a_user_namespace_of_its_own(home: Path) -> None:
    answer = run_as_nobody(home, chroot=False)
    bomb = answer["bomb"]
    assert isinstance(bomb, dict)
    assert bomb["euid"] == NOBODY, answer
    # The user-namespace route: RLIMIT_NPROC is the cap itself, counted for this child alone.
    assert bomb["nproc"] == CAP, answer
    assert bomb["threads"] == CAP - 1, answer
    assert bomb["errno"] == 11, answer
    normal = answer["normal"]
    assert isinstance(normal, dict) and normal["n"] > 0, answer


def test_a_thread_bomb_adds_at_most_the_cap_where_user_namespaces_are_refused(
    home: Path,
) -> None:
    answer = run_as_nobody(home, chroot=True)
    bomb = answer["bomb"]
    assert isinstance(bomb, dict)
    assert bomb["euid"] == NOBODY, answer
    # The user-count route: RLIMIT_NPROC is nobody's tasks at the fork plus the cap.
    nproc = bomb["nproc"]
    assert isinstance(nproc, int) and nproc > CAP, answer
    assert bomb["threads"] == CAP, answer
    assert bomb["errno"] == 11, answer
    normal = answer["normal"]
    assert isinstance(normal, dict) and normal["n"] > 0, answer
