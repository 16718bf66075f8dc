"""``run_screening``: instances + bars → today's ranked opportunities (plain JSON)."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from strategyq.engine.instances import normalize_instances, numeric_or_none, signal_is_true
from strategyq.engine.jsonvalues import date_to_day, day_to_iso, parse_day
from strategyq.engine.market import Market, as_market
from strategyq.errors import EngineError, TaskValidationError


def run_screening(
    instances: Any,
    df: pd.DataFrame | Market,
    *,
    limit: int,
    universe: Sequence[str],
    as_of: dt.date | None = None,
    max_instances: int = 10_000,
) -> dict[str, Any]:
    """Rank the instances dated on ``as_of`` and return the best ``limit``.

    An instance without a date is dated ``as_of`` (default: the latest session
    in ``df``). Ranking: ``score`` descending, then ``signal_strength``
    descending (missing ones last), then truthy ``signal`` first, then ticker,
    then the strategy's own order.

    Raises:
        TaskValidationError: ``limit`` is not a whole number ≥ 0.
        EngineError: an instance is malformed (the message names it).
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        raise TaskValidationError(f"limit={limit!r} is not allowed; use a whole number ≥ 0")
    market = as_market(df)
    names = list(dict.fromkeys(str(u) for u in universe))
    requested = _as_of(as_of, market.day.max() if market.rows else None)
    day = _session_on_or_before(market, names, requested)
    normalized = normalize_instances(instances, known_tickers=names, default_date=day)
    unknown = set(normalized.unknown_tickers)
    current, other_days = _candidates_on(normalized.days, day, unknown)
    current.sort(key=lambda i: _rank_key(normalized.records[i], normalized.scores[i], i))
    chosen = current[: min(limit, max_instances)]
    ranked = [_result(normalized.records[i], normalized.scores[i]) for i in chosen]
    missing, stale = _missing_and_stale(market, names, day)
    warnings = _warnings(len(unknown), other_days, missing, stale, day)
    return {
        "ranked_results": ranked,
        "universe_size": len(names),
        "results_returned": len(ranked),
        "as_of": day.isoformat() if day else None,
        "as_of_requested": requested.isoformat() if requested else None,
        "missing_symbols": missing,
        "stale_symbols": stale,
        "total_instances": normalized.total,
        "candidates": len(current),
        "unknown_ticker_instances": len(unknown),
        "instances_not_on_as_of": other_days,
        "warnings": warnings,
    }


def _candidates_on(
    days: Sequence[dt.date | None], day: dt.date | None, unknown: set[int]
) -> tuple[list[int], int]:
    """Indexes of the instances dated ``day`` (known tickers only), and how many are not."""
    current: list[int] = []
    other_days = 0
    for i, when in enumerate(days):
        if i in unknown:
            continue
        if when == day:
            current.append(i)
        else:
            other_days += 1
    return current, other_days


def _missing_and_stale(
    market: Market, names: list[str], day: dt.date | None
) -> tuple[list[str], list[str]]:
    """Universe symbols with no bars at all, and those whose last bar is before ``day``."""
    last_day = {
        symbol: int(market.day[end - 1])
        for symbol, end in zip(market.symbols, market.ends.tolist(), strict=True)
    }
    missing = [s for s in names if s not in last_day]
    cutoff = date_to_day(day) if day else None
    stale = [s for s in names if cutoff is not None and s in last_day and last_day[s] < cutoff]
    return missing, stale


def _as_of(as_of: Any, latest: Any) -> dt.date | None:
    if as_of is not None:
        try:
            return parse_day(as_of)
        except ValueError as exc:
            raise EngineError(f"as_of: {exc}") from None
    if latest is None:
        return None
    return dt.date.fromisoformat(day_to_iso(int(latest)))


def _session_on_or_before(
    market: Market, universe: list[str], day: dt.date | None
) -> dt.date | None:
    """The universe's last session on or before ``day`` (``day`` itself when none is)."""
    if day is None or market.rows == 0:
        return day
    code_of = market.code_of()
    codes = [code_of[s] for s in universe if s in code_of]
    if not codes:
        return day
    cutoff = date_to_day(day)
    best = None
    for code in codes:
        days = market.day[market.starts[code] : market.ends[code]]
        at = int(np.searchsorted(days, cutoff, side="right")) - 1
        if at >= 0 and (best is None or days[at] > best):
            best = int(days[at])
    return dt.date.fromisoformat(day_to_iso(best)) if best is not None else day


def _rank_key(record: dict[str, Any], score: float | None, index: int) -> tuple[Any, ...]:
    strength = numeric_or_none(record.get("signal_strength"))
    return (
        -score if score is not None else math.inf,
        -strength if strength is not None else math.inf,
        not signal_is_true(record.get("signal")),
        record["ticker"],
        index,
    )


def _result(record: dict[str, Any], score: float | None) -> dict[str, Any]:
    out = {
        "ticker": record["ticker"],
        "score": score,
        "signal": record["signal"],
        "message": record.get("message"),
    }
    if not isinstance(out["message"], str) or not out["message"]:
        scored = f" (score {score:g})" if score is not None else ""
        out["message"] = f"{record['ticker']} signal on {record.get('date', 'as_of')}{scored}"
    for key, value in record.items():
        if key not in out:
            out[key] = value
    return out


def _warnings(
    unknown: int, other_days: int, missing: list[str], stale: list[str], day: dt.date | None
) -> list[str]:
    notes: list[str] = []
    if day is None:
        notes.append("no market data and no as_of: nothing could be dated; import data first")
    if unknown:
        notes.append(f"{unknown} instance(s) name tickers outside the universe; ignored")
    if other_days:
        notes.append(f"{other_days} instance(s) are dated on another day than as_of; not ranked")
    if missing:
        notes.append(f"{len(missing)} symbol(s) have no market data: {', '.join(missing[:10])}")
    if stale:
        notes.append(
            f"{len(stale)} symbol(s) have no session on as_of (stale data): {', '.join(stale[:10])}"
        )
    return notes
