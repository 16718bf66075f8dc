"""What a read-scope caller is not shown: the strategy source of tasks and schedules.

Strategy code is the one secret a queue holds (it is what a user wrote); a
read-scope token sees every field but that one, in the API and on the pages.
"""

from __future__ import annotations

from typing import Any

import orjson

HIDDEN = "<hidden: needs a write-scope token>"


def strip_source(entry: dict[str, Any]) -> dict[str, Any]:
    """A dead-letter entry without the strategy source (for read-scope callers)."""
    raw = entry.get("raw")
    if not isinstance(raw, str):
        return entry
    try:
        message = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {**entry, "raw": HIDDEN}
    if isinstance(message, dict) and isinstance(message.get("args"), dict):
        args = {**message["args"], "strategy_code": HIDDEN}
        return {**entry, "raw": orjson.dumps({**message, "args": args}).decode()}
    return entry


def strip_record_source(record: dict[str, Any]) -> dict[str, Any]:
    """A result record without the strategy source of its ``data.task_args``."""
    data = record.get("data")
    args = data.get("task_args") if isinstance(data, dict) else None
    if not isinstance(data, dict) or not isinstance(args, dict) or "strategy_code" not in args:
        return record
    return {**record, "data": {**data, "task_args": {**args, "strategy_code": HIDDEN}}}


def record_for(record: dict[str, Any], can_write: bool) -> dict[str, Any]:
    """The record as a caller of that scope may see it."""
    return record if can_write else strip_record_source(record)
