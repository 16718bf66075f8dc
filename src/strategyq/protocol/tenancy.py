"""Tenants and lanes on the wire: the optional top-level ``tenant`` and ``priority`` fields.

A message without them (the seed's raw ``LPUSH``) runs as tenant ``default`` in
its type's default lane: screens in ``interactive``, backtests and sweeps in
``batch``. A sweep's chunks carry the sweep's two fields. The Lua side of the
queue (``queue/lua/_lanes.lua``) applies the same rules to raw messages.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from strategyq.errors import TaskValidationError

DEFAULT_TENANT = "default"
INTERACTIVE = "interactive"
BATCH = "batch"

BUILTIN_LANES: dict[str, int] = {INTERACTIVE: 4, BATCH: 1}
"""The lanes every installation has, with their default weights: out of every five
tasks taken while both lanes wait, four are interactive and one is batch. An operator
changes a weight or names more lanes with ``strategyq lane set NAME --weight N``."""

_TENANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@+\-]{0,63}$")
_LANE = re.compile(r"^[a-z][a-z0-9_\-]{0,31}$")

TENANT_RULE = (
    "1 to 64 characters: letters, digits and . _ : @ + - (starting with a letter or digit)"
)
LANE_RULE = "1 to 32 characters: lower-case letters, digits, _ and - (starting with a letter)"


def default_lane(task_type: str) -> str:
    """The lane of a message of ``task_type`` that names no ``priority``."""
    return INTERACTIVE if task_type == "screening" else BATCH


def check_tenant(tenant: Any) -> str:
    """``tenant`` when it is a valid tenant name.

    Raises:
        TaskValidationError: with the rule.
    """
    if not isinstance(tenant, str) or not _TENANT.match(tenant):
        raise TaskValidationError(f"tenant must be {TENANT_RULE}, got {_show(tenant)}")
    return tenant


def check_lane(lane: Any) -> str:
    """``lane`` when it is a well-formed lane name (whether it exists is the queue's to say).

    Raises:
        TaskValidationError: with the rule.
    """
    if not isinstance(lane, str) or not _LANE.match(lane):
        raise TaskValidationError(
            f"priority must name a lane ({INTERACTIVE!r}, {BATCH!r} or one an operator "
            f"added), {LANE_RULE}; got {_show(lane)}"
        )
    return lane


def tenant_and_lane(message: Mapping[str, Any]) -> tuple[str, str]:
    """The message's tenant and lane, defaults applied.

    Raises:
        TaskValidationError: a field is there but malformed.
    """
    tenant = message.get("tenant")
    lane = message.get("priority")
    return (
        DEFAULT_TENANT if tenant is None else check_tenant(tenant),
        default_lane(str(message.get("task_type"))) if lane is None else check_lane(lane),
    )


def with_tenancy(
    message: dict[str, Any], tenant: str | None, priority: str | None
) -> dict[str, Any]:
    """``message`` with ``tenant`` and ``priority`` set where given (validated)."""
    if tenant is not None:
        message["tenant"] = check_tenant(tenant)
    if priority is not None:
        message["priority"] = check_lane(priority)
    return message


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
