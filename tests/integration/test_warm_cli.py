"""A command forked by the warm launcher (tests/warm_cli.py) answers as ``python -m strategyq``.

The integration tests start their ``strategyq`` commands, workers and API servers through
the launcher; each case here runs one command both ways and compares what a test can see:
exit code, standard output, standard error, and the process a test signals.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis

from tests import warm_cli
from tests.integration.conftest import wait_until
from tests.integration.test_cli_wait import _blocked_in_wait

REFUSED = "import os\n\ndef f(df):\n    return os.listdir('/')\n"


def both(args: list[str], **kwargs: Any) -> tuple[Any, Any]:
    forked = warm_cli.run(args, capture_output=True, text=True, timeout=120, **kwargs)
    executed = subprocess.run(warm_cli.command(args), capture_output=True, text=True,
                              timeout=120, **kwargs)  # fmt: skip
    return forked, executed


def seen(done: subprocess.CompletedProcess[str]) -> tuple[int, str, str]:
    return done.returncode, done.stdout, done.stderr


@pytest.mark.skipif(warm_cli.EXEC, reason="STRATEGYQ_TEST_EXEC=1 runs every command by exec")
@pytest.mark.parametrize(
    "args",
    [
        ["--version"],
        ["submit", "backtest", "--no-such-option"],  # click's usage error names the program
        ["result", "no-such-task"],
        ["queue"],
        ["dlq", "list"],
        ["schedule", "list", "--json"],
        ["check", "strategy.py"],  # a relative path: the working directory is the child's
        ["check", "strategy.py", "--json"],
    ],
    ids=lambda args: " ".join(args),
)
def test_a_forked_command_answers_as_the_executable_does(
    args: list[str], worker_env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "strategy.py").write_text(REFUSED)
    env = {**worker_env, "COLUMNS": "120"}
    forked, executed = both(args, env=env, cwd=tmp_path)
    assert seen(forked) == seen(executed)


@pytest.mark.skipif(warm_cli.EXEC, reason="STRATEGYQ_TEST_EXEC=1 runs every command by exec")
def test_standard_input_and_the_environment_reach_the_child(worker_env: dict[str, str]) -> None:
    forked, executed = both(["check", "-"], env=worker_env, input=REFUSED)
    assert seen(forked) == seen(executed) and forked.returncode == 1
    # A setting read from the environment given for this command, not the launcher's.
    other = {**worker_env, "REDIS_URL": "redis://127.0.0.1:1/0"}
    forked, executed = both(["queue"], env=other)
    assert forked.returncode == executed.returncode != 0
    assert "127.0.0.1:1" in forked.stderr and forked.stderr == executed.stderr


@pytest.mark.skipif(warm_cli.EXEC, reason="STRATEGYQ_TEST_EXEC=1 runs every command by exec")
def test_a_forked_command_is_a_process_of_its_own_that_signals_reach(
    worker_env: dict[str, str], redis_client: redis.Redis
) -> None:
    redis_client.set("task_result:held", orjson.dumps({"status": "queued"}))
    waiting = warm_cli.popen(["wait", "held", "--timeout", "120"], env=worker_env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert waiting.pid not in (os.getpid(), os.getppid())
    # Ctrl-C once it waits: the command's own handler answers (exit 130), as in a terminal.
    wait_until(lambda: _blocked_in_wait(redis_client), timeout_s=60)
    waiting.send_signal(signal.SIGINT)
    out, err = waiting.communicate(timeout=60)
    assert waiting.returncode == 130, (out, err)
    killed = warm_cli.popen(["wait", "held", "--timeout", "120"], env=worker_env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    assert killed.poll() is None
    killed.send_signal(signal.SIGKILL)
    assert killed.wait(30) == -signal.SIGKILL
    with pytest.raises(subprocess.TimeoutExpired):
        warm_cli.run(["wait", "held", "--timeout", "120"], env=worker_env, timeout=0.5)
