"""Ctrl-C while an executor is being spawned is raised only once the process has a handle."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator

import pytest

from strategyq.executor.client import interrupts_held


@pytest.fixture
def default_sigint() -> Iterator[None]:
    """SIGINT raising KeyboardInterrupt, as in a terminal or a notebook (xdist may differ)."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


def _sigint_from_another_thread() -> None:
    # Delivered to that thread, as the kernel may deliver a process's SIGINT to any
    # thread that does not block it (numpy's BLAS threads); Python still runs the
    # handler in the main thread.
    thread = threading.Thread(target=signal.raise_signal, args=(signal.SIGINT,))
    thread.start()
    thread.join()


@pytest.mark.parametrize("where", ["main-thread", "other-thread"])
def test_a_ctrl_c_in_the_block_is_raised_after_it(default_sigint: None, where: str) -> None:
    steps = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts_held():
            if where == "main-thread":
                signal.raise_signal(signal.SIGINT)
            else:
                _sigint_from_another_thread()
            # Many bytecodes later: the handler has run, and raised nothing yet.
            for n in range(1000):
                steps.append(n)
            steps.append("end of block")
        steps.append("after the block")
    assert steps[-1] == "end of block"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_no_ctrl_c_no_exception_and_the_handler_is_back(default_sigint: None) -> None:
    with interrupts_held():
        assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_an_ignored_ctrl_c_stays_ignored() -> None:
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with interrupts_held():
            signal.raise_signal(signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)
