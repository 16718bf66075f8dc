"""A worker with injected faults, for the crash tests (never part of the package).

Run as ``python -m tests.fault_worker`` from the repository root with the same
environment as ``strategyq worker`` plus:

- ``STRATEGYQ_FAULT_CRASH_AT="<task_id>:<stage>"``: the worker kills itself with
  SIGKILL when that task reaches that stage (``claimed``, ``loading_data``,
  ``running_strategy``, ``computing_metrics``, ``finishing``), as an OOM kill or
  a node loss would;
- ``STRATEGYQ_FAULT_FINISH_DROPS=<n>``: the first ``n`` terminal writes raise
  ``redis.ConnectionError`` after the write reached the server, as if the reply
  had been lost on the wire.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Mapping

import redis

from strategyq.logs import configure_logging
from strategyq.settings import Settings
from strategyq.worker import Hooks, Worker

log = logging.getLogger(__name__)


class FaultHooks(Hooks):
    """The faults the environment asks for, at exact points of the real code path."""

    def __init__(self, env: Mapping[str, str]) -> None:
        crash = env.get("STRATEGYQ_FAULT_CRASH_AT", "")
        self.crash_task, _, self.crash_stage = crash.rpartition(":")
        self._drops = int(env.get("STRATEGYQ_FAULT_FINISH_DROPS", "0") or 0)
        self._lock = threading.Lock()

    def at_stage(self, task_id: str, stage: str) -> None:
        if self.crash_task and task_id == self.crash_task and stage == self.crash_stage:
            log.warning("fault injection: killing the worker at %s of task %s", stage, task_id)
            os.kill(os.getpid(), signal.SIGKILL)

    def after_finish(self, task_id: str) -> None:
        with self._lock:
            if self._drops <= 0:
                return
            self._drops -= 1
        raise redis.ConnectionError("fault injection: terminal write reply lost")


def main() -> int:
    configure_logging("text", "INFO")
    worker = Worker(Settings.from_env(), hooks=FaultHooks(os.environ))
    return worker.run()


if __name__ == "__main__":
    raise SystemExit(main())
