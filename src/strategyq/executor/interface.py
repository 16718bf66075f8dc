"""The worker's one interface to an executor: what a slot of the worker runs tasks through.

:class:`~strategyq.executor.client.ExecutorProcess` is the production one (a
secret-free process with its sandbox host);
:class:`~strategyq.executor.inprocess.InProcessExecutor` runs tasks in the
worker's own process, for tests of the worker's logic (rq's ``SimpleWorker``
is the model). The worker never knows which one it holds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from strategyq.executor.client import RunOutcome
from strategyq.protocol.results import Stage
from strategyq.settings import Settings


class Executor(Protocol):
    """One task at a time; started warm, replaced by the worker when it dies."""

    layers: dict[str, bool]
    """The sandbox layers it runs strategies under (``landlock``, ``seccomp``, ``canary``)."""

    def spawn(self) -> None:
        """Begin starting, without waiting for it to be warm."""

    def wait_ready(self) -> dict[str, bool]:
        """Wait until it is warm; returns :attr:`layers`."""

    def start(self) -> dict[str, bool]:
        """:meth:`spawn` then :meth:`wait_ready`."""

    def run(
        self, raw: bytes, on_stage: Callable[[Stage], None], *, deadline_s: float | None = None
    ) -> RunOutcome:
        """Run one task message; ``on_stage`` hears each stage name as it starts.

        Raises:
            ExecutorDied, ExecutorHung, ExecutorStopped: the run was lost (see
                :mod:`strategyq.executor.client`).
        """

    def cancel(self) -> None:
        """Stop the task now running (no effect when idle)."""

    def kill(self) -> None:
        """Stop at once, whatever it is doing."""

    def alive(self) -> bool:
        """Whether it can take another task."""

    def close(self, timeout_s: float = 5.0) -> None:
        """Let go of it and everything it started."""


ExecutorFactory = Callable[[Settings], Executor]
"""What the worker's pool builds each slot's executor with."""
