"""The seed's worker entry point and producer functions, as a thin shim over strategyq.

cd services/worker && python worker.py          # runs a worker (same options as `strategyq worker`)
from worker import add_backtest_task, add_screening_task, get_task_result
"""

from __future__ import annotations

import sys

try:
    from strategyq import (
        add_backtest_task,
        add_screening_task,
        cancel_task,
        get_task_result,
        wait_for_result,
    )
except ModuleNotFoundError as exc:  # run with a Python that does not have the package
    if exc.name != "strategyq":
        raise
    raise SystemExit(
        f"error: strategyq is not installed for {sys.executable}. From the repository root, "
        "run `make install` and then `../../.venv/bin/python worker.py` here (or activate "
        "the venv with `. .venv/bin/activate`), or install it with `pip install -e .`"
    ) from None

__all__ = [
    "add_backtest_task",
    "add_screening_task",
    "cancel_task",
    "get_task_result",
    "main",
    "wait_for_result",
]


def main(argv: list[str] | None = None) -> None:
    """Run ``strategyq worker`` with these arguments."""
    from strategyq.cli import main as cli_main

    sys.argv = [sys.argv[0], "worker", *(sys.argv[1:] if argv is None else argv)]
    cli_main()


if __name__ == "__main__":
    main()
