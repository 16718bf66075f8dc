"""The wire's tenant and priority fields, and the Lua side's copy of their rules."""

from __future__ import annotations

import re

import pytest

from strategyq.errors import TaskValidationError
from strategyq.protocol.tenancy import (
    BUILTIN_LANES,
    check_lane,
    check_tenant,
    default_lane,
    tenant_and_lane,
)
from strategyq.queue.scripts import source


def test_a_message_without_the_fields_is_default_in_its_types_lane() -> None:
    assert tenant_and_lane({"task_type": "screening"}) == ("default", "interactive")
    assert tenant_and_lane({"task_type": "backtest"}) == ("default", "batch")
    assert tenant_and_lane({"task_type": "sweep"}) == ("default", "batch")
    assert tenant_and_lane(
        {"task_type": "backtest", "tenant": "u-1", "priority": "interactive"}
    ) == (
        "u-1",
        "interactive",
    )
    assert default_lane("sweep_chunk") == "batch"


@pytest.mark.parametrize("name", ["user-4711", "acme.corp", "a@b.c", "x:y+z_1", "A" * 64])
def test_tenant_names_that_are_accepted(name: str) -> None:
    assert check_tenant(name) == name


@pytest.mark.parametrize("name", ["", " a", "a b", "-a", "A" * 65, "a/b", "a\nb", 7, None])
def test_tenant_names_that_are_refused_say_the_rule(name: object) -> None:
    with pytest.raises(TaskValidationError, match="tenant must be 1 to 64 characters"):
        check_tenant(name)


@pytest.mark.parametrize("lane", ["Urgent", "1st", "", "a b", 3])
def test_lane_names_that_are_refused_say_the_rule(lane: object) -> None:
    with pytest.raises(TaskValidationError, match="priority must name a lane"):
        check_lane(lane)


def test_the_lua_side_has_the_same_builtin_lanes_and_defaults() -> None:
    lua = source("take")
    found = re.search(r"local BUILTIN_LANES = \{([^}]*)\}", lua)
    assert found is not None
    pairs = dict(re.findall(r"(\w+) = (\d+)", found.group(1)))
    assert {k: int(v) for k, v in pairs.items()} == BUILTIN_LANES
    assert 'msg["task_type"] == "screening" and "interactive" or "batch"' in lua
    assert 'if queue == "strategy_queue" then' in lua
