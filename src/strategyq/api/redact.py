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
