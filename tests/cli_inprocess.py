"""``strategyq ARGS`` run in the test's process, for commands that only parse and check.

It calls the console script's own entry point, ``strategyq.cli.main()``, with ``sys.argv``
set: the same argument parsing, the same one-line errors and the same exit codes as
``python -m strategyq ARGS``, with the standard streams, the environment and the working
directory swapped for the call (click's ``CliRunner.isolation``). An exception that the
entry point lets escape is not turned into exit code 1 and a traceback on stderr: it
propagates and fails the test.

Only for commands with no Redis, no processes and no files written (``check``, ``--help``,
a ``submit`` refused before it connects); each command family keeps tests that run the
real ``strategyq`` executable (docs/testing.md lists which run here).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner


def strategyq(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``strategyq ARGS`` in this process with exactly ``env`` (default: this
    process's environment); its exit code and output as ``subprocess.run`` gives them."""
    from strategyq.cli import main

    overrides: dict[str, str | None] = {}
    if env is not None:
        overrides = {name: None for name in os.environ if name not in env}
        overrides.update(env)
    runner = CliRunner()
    argv = sys.argv
    with contextlib.ExitStack() as stack:
        stdout, stderr, _ = stack.enter_context(runner.isolation(env=overrides))
        if cwd is not None:
            stack.enter_context(contextlib.chdir(cwd))
        sys.argv = ["strategyq", *args]
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        finally:
            sys.argv = argv
            sys.stdout.flush()
            sys.stderr.flush()
    return subprocess.CompletedProcess(
        ["strategyq", *args],
        code,
        stdout.getvalue().decode(),
        stderr.getvalue().decode(),
    )
