"""Instances on warm-up rows: left out of a backtest's ``instances``, counted apart.

The strategy's frame starts ``lookback_sessions`` before ``start_date`` so its
indicators are warm on the first session. A strategy that scans every row finds
signals on those warm-up rows too; they never trade (the engine counts them as
``signals_before_start``). Listing them among the result's instances would make
"17 instances" of a 2010 backtest include 2009 dates, so they are left out of
``instances`` and counted in ``summary.warmup_instances``; ``total_instances`` and
``positive_signals`` count the instances in the range. Trades' ``instance_index``
point into the list as returned.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from strategyq.engine.instances import signal_is_true


def leave_out_warmup(payload: dict[str, Any], start: dt.datetime | dt.date) -> dict[str, Any]:
    """``payload`` (a backtest result) without the instances dated before ``start``."""
    first = (start.date() if isinstance(start, dt.datetime) else start).isoformat()
    instances = payload.get("instances") or []
    kept: list[Any] = []
    moved: dict[int, int] = {}
    dropped = positive = 0
    for index, instance in enumerate(instances):
        day = instance.get("date") if isinstance(instance, dict) else None
        if isinstance(day, str) and day[:10] < first:
            dropped += 1
            positive += signal_is_true(instance.get("signal", True))
            continue
        moved[index] = len(kept)
        kept.append(instance)
    summary = payload.get("summary")
    if isinstance(summary, dict):
        summary["warmup_instances"] = dropped
        if dropped:
            summary["total_instances"] = int(summary.get("total_instances", 0)) - dropped
            summary["positive_signals"] = int(summary.get("positive_signals", 0)) - positive
    if not dropped:
        return payload
    payload["instances"] = kept
    for trade in payload.get("trades") or []:
        for key in ("instance_index", "exit_instance_index"):
            if trade.get(key) in moved:
                trade[key] = moved[trade[key]]
    return payload
