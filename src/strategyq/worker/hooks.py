"""Callbacks a worker calls at fixed points of a task (tests inject faults through them)."""

from __future__ import annotations

from dataclasses import dataclass

from strategyq.protocol.results import Stage


@dataclass
class Hooks:
    """No-ops by default. Subclass to observe a task or to inject a fault.

    ``at_stage`` is called from the task's thread with ``claimed``, each
    stage the executor reports (``loading_data``, ``running_strategy``,
    ``computing_metrics``), and ``finishing`` just before the terminal write.
    ``after_finish`` is called after each terminal write reached the server
    and before its reply is used: raising ``redis.ConnectionError`` there
    simulates a reply lost on the wire.
    """

    def at_stage(self, task_id: str, stage: Stage) -> None:
        """A task reached ``stage``."""

    def after_finish(self, task_id: str) -> None:
        """A terminal write of ``task_id`` reached the server."""
