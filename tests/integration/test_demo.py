"""``strategyq demo``: its last lines say what to type next; signals clean up like Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from strategyq.embedded_valkey import EmbeddedServer

ROOT = Path(__file__).resolve().parents[2]


def _environment(home: Path, libraries: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "STRATEGYQ_"))}
    # A shell that has not activated the virtualenv, as after a fresh `make demo`.
    venv_bin = str(Path(sys.executable).parent)
    path = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)
    env = {**env, "PATH": path, "STRATEGYQ_HOME": str(home), "COLUMNS": "200"}
    if not libraries:
        # The demo's strategies import no optional library: without the full fork
        # server (about 3 CPU-seconds to start) its worker runs them the same way.
        env["STRATEGYQ_SANDBOX_LIBRARIES"] = "none"
    return env


def _descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (through /proc's children lists)."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        current = todo.pop()
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for child in map(int, children):
                if child not in found:
                    found.add(child)
                    todo.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class Demo:
    def __init__(self, home: Path, *args: str, libraries: bool = True) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "strategyq", "demo", *args], cwd=ROOT,
            env=_environment(home, libraries), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True,
        )  # fmt: skip
        self.lines: list[str] = []
        self.pump = threading.Thread(target=self._pump, daemon=True)
        self.pump.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        with self.proc.stdout:
            for line in self.proc.stdout:
                self.lines.append(line)

    def wait_for(self, text: str, timeout_s: float = 240) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if any(text in line for line in self.lines):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"{text!r} not in the demo's output:\n{''.join(self.lines)}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.pump.join(10)


# SIGTERM stops the demo's whole default tree, the full fork server with its optional
# libraries included; SIGHUP takes the same clean-up path, on the tree without it.
@pytest.mark.parametrize(
    ("signum", "libraries"), [(signal.SIGTERM, True), (signal.SIGHUP, False)],
    ids=["SIGTERM", "SIGHUP"],
)  # fmt: skip
def test_a_signal_to_demo_serve_stops_everything_it_started(
    tmp_path: Path, signum: int, libraries: bool
) -> None:
    home = tmp_path / "home"
    demo = Demo(home, "--serve", libraries=libraries)
    started: set[int] = set()
    try:
        demo.wait_for("until Ctrl-C")
        started = _descendants(demo.proc.pid)
        assert len(started) >= 3, started  # the worker, its executor, the API server, …
        server = EmbeddedServer(home / "valkey")
        assert server.is_running()
        demo.proc.send_signal(signum)
        code = demo.proc.wait(90)
        demo.pump.join(10)
    finally:
        demo.kill()
        for pid in started:
            # Only what this test's demo started; never a broad kill.
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert code == 0, "".join(demo.lines)
    assert "stopped the worker and the embedded server" in "".join(demo.lines)
    assert [pid for pid in started if _alive(pid)] == []
    assert not EmbeddedServer(home / "valkey").is_running()


def test_demo_ends_with_the_command_that_reopens_the_dashboard(tmp_path: Path) -> None:
    home = tmp_path / "home"
    demo = Demo(home, libraries=False)
    try:
        assert demo.proc.wait(300) == 0, "".join(demo.lines)
        demo.pump.join(10)
    finally:
        demo.kill()
    tail = "".join(demo.lines[-4:])
    cli = Path(sys.executable).with_name("strategyq")
    assert f"{cli.relative_to(ROOT)} serve" in tail or f"{cli} serve" in tail, tail
    assert "activate" in tail, tail
