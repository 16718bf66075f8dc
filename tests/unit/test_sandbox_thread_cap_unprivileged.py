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

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

NOBODY = 65534
CAP = 8

# One xdist worker runs both tests, one after the other: RLIMIT_NPROC counts every task of
# the real uid, so while the other test's processes, also nobody's, exit, the user-count
# route's bomb could take their places and start more than the cap it is checked against.
pytestmark = pytest.mark.xdist_group(__name__)
REPO = Path(__file__).resolve().parents[2]

# Run as nobody: a store it writes itself, a sandbox host it starts, a bomb and a normal task.
WORKER = """
import dataclasses, os, socket, subprocess, sys
import orjson
from strategyq.data.synth import write_synthetic
from strategyq.sandbox.forkclient import ForkClient
from strategyq.settings import Settings
from tests.unit.test_sandbox_isolation import LIMITS, NORMAL, request, thread_bomb

home = sys.argv[1]
write_synthetic(os.path.join(home, "data"), 2, 3, seed=3)
ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
settings = Settings.from_env({"STRATEGYQ_HOME": home}, data_cache_mb=64)
host = subprocess.Popen(
    [sys.executable, "-m", "strategyq.executor.sandbox_host", str(theirs.fileno()),
     settings.for_child_process().decode()],
    pass_fds=(theirs.fileno(),), env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
)
theirs.close()
ready = orjson.loads(ours.recv(1 << 16))
assert ready["ready"], ready
client = ForkClient(ours, spares=False)
limits = dataclasses.replace(LIMITS, time_limit_s=20, max_threads=int(sys.argv[2]))
later = request(["SYN0001"], "2024-01-02T00:00:00", "2024-06-28T00:00:00")
bomb = client.run(thread_bomb(), later, limits, check_policy=False)[0][0]
normal = client.run(NORMAL, later, limits)[0][0]
ours.close()
host.wait(30)
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
capabilities = int(status["CapEff"], 16) | int(status["CapPrm"], 16)
print(orjson.dumps({"uid": os.getuid(), "capabilities": capabilities, "bomb": bomb,
                    "normal": normal}).decode())
"""


@pytest.fixture()
def home() -> Iterator[Path]:
    # pytest's tmp_path is 0700 under root's directory: nobody needs one it can reach.
    path = Path(tempfile.mkdtemp(prefix="strategyq-nobody-", dir="/tmp"))
    try:
        os.chmod(path, 0o755)
        os.chown(path, NOBODY, NOBODY)
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


def run_as_nobody(home: Path, *, chroot: bool) -> dict[str, object]:
    worker = [sys.executable, "-c", WORKER, str(home), str(CAP)]
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
