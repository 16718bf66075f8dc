"""The long-running processes warm up with the cyclic collector paused, then run with it on."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from strategyq.startup import warming_up


@pytest.fixture
def collector() -> Iterator[None]:
    """Leave the collector as the test found it (on, nothing frozen)."""
    enabled = gc.isenabled()
    yield
    gc.unfreeze()
    if enabled:
        gc.enable()
    else:
        gc.disable()


def test_the_collector_is_paused_while_warming_up_and_on_again_after(collector: None) -> None:
    gc.enable()
    gc.unfreeze()
    with warming_up():
        assert not gc.isenabled()
        made = [[i] for i in range(1000)]
    assert gc.isenabled()
    # What start-up made is in the permanent generation: no later collection walks it.
    assert gc.get_freeze_count() >= len(made)


def test_the_collector_is_back_on_after_an_error_while_warming_up(collector: None) -> None:
    gc.enable()
    with pytest.raises(RuntimeError), warming_up():
        raise RuntimeError("import failed")
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off(collector: None) -> None:
    gc.disable()
    with warming_up():
        pass
    assert not gc.isenabled()
