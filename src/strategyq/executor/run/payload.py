"""Fitting a result payload under the result cap: long lists halved, counts kept."""

from __future__ import annotations

from typing import Any

import orjson

from strategyq.errors import DataError

TRIMMABLE = ("instances", "trades", "ranked_results")
CURVES = ("equity_curve", "benchmark_curve")


def fit_payload(data: dict[str, Any], max_bytes: int) -> bytes:
    """Serialise ``data``, halving its long lists until it fits in ``max_bytes``.

    Counts stay as they were; each trimmed list is flagged in
    ``data["truncated"]`` so a client knows it holds a prefix.
    """
    encoded = orjson.dumps(data)
    if len(encoded) <= max_bytes:
        return encoded
    trimmed = dict(data)
    flags: dict[str, int] = {}
    while len(encoded) > max_bytes:
        longest = max(
            (k for k in TRIMMABLE if isinstance(trimmed.get(k), list) and trimmed[k]),
            key=lambda k: len(trimmed[k]),
            default=None,
        )
        if longest is None:
            curve = next(
                (
                    name
                    for name in reversed(CURVES)
                    if isinstance(trimmed.get(name), dict) and trimmed[name].get("dates")
                ),
                None,
            )
            if curve is not None:
                trimmed[curve] = {"dates": [], "values": []}
                flags[curve] = 0
            else:
                raise DataError(
                    f"the result is larger than the cap of {max_bytes} bytes even without its "
                    "lists; return fewer or smaller fields per instance"
                )
        else:
            items = trimmed[longest]
            flags.setdefault(longest, len(items))
            trimmed[longest] = items[: len(items) // 2]
        trimmed["truncated"] = {
            k: {"original": n, "returned": len(trimmed[k]) if k in TRIMMABLE else 0}
            for k, n in flags.items()
        }
        summary = trimmed.get("summary")
        if isinstance(summary, dict):
            summary = dict(summary)
            if "instances" in flags:
                summary["instances_truncated"] = True
            if "trades" in flags:
                summary["trades_truncated"] = True
            trimmed["summary"] = summary
        encoded = orjson.dumps(trimmed)
    return encoded
