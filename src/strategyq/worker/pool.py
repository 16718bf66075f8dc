"""The worker's executor processes: one per slot, started warm, replaced when one dies."""

from __future__ import annotations

import logging
import queue
import time
from dataclasses import replace

from strategyq.errors import SandboxUnavailable
from strategyq.executor.client import ExecutorProcess
from strategyq.executor.interface import Executor, ExecutorFactory
from strategyq.settings import Settings

log = logging.getLogger(__name__)

REQUIRED_LAYERS = ("landlock", "seccomp", "canary")
"""``canary``: the start-up self-check task ran through the real lock-down path."""


class ExecutorPool:
    """``settings.concurrency`` executors; a task thread borrows one and gives it back."""

    def __init__(
        self,
        settings: Settings,
        *,
        insecure_no_sandbox: bool,
        factory: ExecutorFactory = ExecutorProcess,
    ) -> None:
        # The executor and its sandbox host read every setting from here.
        self.settings = replace(settings, insecure_no_sandbox=insecure_no_sandbox)
        self.factory = factory
        self.layers: dict[str, bool] = {}
        self._idle: queue.Queue[Executor] = queue.Queue()
        self._all: list[Executor] = []

    def start(self) -> bool:
        """Start every executor (warmed up in parallel); False when a required layer is missing.

        Call from a thread that lives as long as the worker: an executor dies
        with the thread that spawned it.
        """
        executors = [self.factory(self.settings) for _ in range(self.settings.concurrency)]
        for ex in executors:
            ex.spawn()
        layer_sets = [ex.wait_ready() for ex in executors]  # every one, not just the first
        self.layers = layer_sets[0]
        self._all = executors
        missing = [name for name in REQUIRED_LAYERS if not self.layers.get(name)]
        if missing and not self.settings.insecure_no_sandbox:
            log.error(
                "refusing to run tasks: sandbox layer(s) %s unavailable on this kernel "
                "(Landlock needs Linux >= 5.13, seccomp needs libseccomp; 'canary' means the "
                "self-check task failed in the sandbox, the reason is logged above); run on a "
                "supported kernel, or start with --insecure-no-sandbox to accept the risk",
                ", ".join(missing),
            )
            self.close()
            return False
        for ex in executors:
            self._idle.put(ex)
        return True

    def borrow(self, timeout_s: float) -> Executor | None:
        """An idle executor, or None when none frees up within ``timeout_s``."""
        try:
            return self._idle.get(timeout=timeout_s)
        except queue.Empty:
            return None

    def give_back(self, executor: Executor) -> None:
        """Return a borrowed executor; a dead one is replaced by a fresh one first."""
        if not executor.alive():
            executor = self.replace(executor)
        self._idle.put(executor)

    def replace(self, dead: Executor) -> Executor:
        """A fresh executor in place of ``dead`` (killed first, if it still runs or is stopped).

        Raises:
            SandboxUnavailable: three fresh executors in a row failed to start.
        """
        dead.kill()
        dead.close()
        for attempt in range(1, 4):
            fresh = self.factory(self.settings)
            try:
                fresh.start()
            except (SandboxUnavailable, OSError) as exc:
                # Killed while warming up (the OOM killer again?): try again, then give up.
                fresh.close()
                log.warning("a fresh executor failed to start (%s), attempt %d", exc, attempt)
                if attempt == 3:
                    raise
                time.sleep(0.5 * attempt)
                continue
            self._all = [fresh if e is dead else e for e in self._all]
            return fresh
        raise AssertionError("unreachable")

    def close(self) -> None:
        for ex in self._all:
            ex.close()
