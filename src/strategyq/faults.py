"""Fault injection for crash and recovery tests.

Off unless the environment asks for it. Each knob simulates one failure the
reliability guarantees must survive, at an exact point of the real code path:

- ``STRATEGYQ_FAULT_CRASH_AT="<task_id>:<stage>"``: the worker process kills
  itself with SIGKILL when that task reaches that stage (``claimed``,
  ``loading_data``, ``running_strategy``, ``computing_metrics``, ``finishing``),
  as an OOM kill or a node loss would.
- ``STRATEGYQ_FAULT_FINISH_DROPS=<n>``: the first ``n`` terminal writes raise
  ``redis.ConnectionError`` after the write reached the server, as if the
  reply had been lost on the wire.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Mapping

import redis

log = logging.getLogger(__name__)


class Faults:
    """The faults requested by the environment (none by default)."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        crash = env.get("STRATEGYQ_FAULT_CRASH_AT", "")
        self.crash_task, _, self.crash_stage = crash.rpartition(":")
        self._drops = int(env.get("STRATEGYQ_FAULT_FINISH_DROPS", "0") or 0)
        self._lock = threading.Lock()

    @property
    def active(self) -> bool:
        return bool(self.crash_task) or self._drops > 0

    def at_stage(self, task_id: str, stage: str) -> None:
        """Kill this process if a crash was requested for this task at this stage."""
        if self.crash_task and task_id == self.crash_task and stage == self.crash_stage:
            log.warning("fault injection: killing the worker at %s of task %s", stage, task_id)
            os.kill(os.getpid(), signal.SIGKILL)

    def after_finish(self) -> None:
        """Raise a ConnectionError for the first ``n`` terminal writes."""
        with self._lock:
            if self._drops <= 0:
                return
            self._drops -= 1
        raise redis.ConnectionError("fault injection: terminal write reply lost")
