"""What the tests need from the machine, installed from Debian's registry when missing.

Tests that drive a real Chromium, Go, promtool, openssl or PostgreSQL never skip for
want of them: as root with apt-get, the first test that needs a package installs it
(one install at a time across pytest-xdist workers); otherwise the test fails and says
which packages to install.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

_LOCK = Path(tempfile.gettempdir()) / "strategyq-tests-apt.lock"
_updated = False


def _apt_install(packages: list[str]) -> str:
    """Install ``packages`` with apt-get (as root); what went wrong, or ''."""
    global _updated
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return "not root or no apt-get here"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    wait = ["-o", "DPkg::Lock::Timeout=600"]
    with _LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _updated:
            subprocess.run(["apt-get", *wait, "update", "-qq"], env=env, capture_output=True)
            _updated = True
        proc = subprocess.run(
            ["apt-get", *wait, "install", "-y", "-qq", *packages],
            env=env, capture_output=True, text=True, timeout=1200,
        )  # fmt: skip
    return "" if proc.returncode == 0 else proc.stderr.strip()[-800:]


def require(found: object, packages: list[str], what: str) -> None:
    """Install ``packages`` unless ``found()`` is true; fail the test if it is still not."""
    assert callable(found)
    if found():
        return
    problem = _apt_install(packages)
    if not found():
        pytest.fail(
            f"{what} is needed: `apt-get install -y {' '.join(packages)}`"
            + (f" ({problem})" if problem else ""),
            pytrace=False,
        )


def require_command(command: str, packages: list[str]) -> str:
    """The path of ``command``, installing ``packages`` first if it is missing."""
    require(lambda: shutil.which(command) is not None, packages, f"`{command}`")
    found = shutil.which(command)
    assert found is not None
    return found


def require_path(path: str | Path, packages: list[str]) -> Path:
    """``path``, installing ``packages`` first if it does not exist."""
    require(lambda: Path(path).exists(), packages, str(path))
    return Path(path)
