"""A screening task: the universe's latest sessions, the strategy's instances, ranked."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from strategyq.engine import run_screening
from strategyq.errors import DataError
from strategyq.executor.run.context import (
    WARMUP_SESSIONS,
    RunContext,
    data_warnings,
    engine_market,
)
from strategyq.protocol.task import ScreeningArgs, Task

SCREENING_LOOKBACK_SESSIONS = 260


def run(task: Task, ctx: RunContext) -> dict[str, Any]:
    args = task.args
    assert isinstance(args, ScreeningArgs)
    as_of = args.as_of or ctx.market.latest_session(list(args.universe))
    if as_of is None:
        raise DataError(
            f"no market data for any symbol of the universe ({', '.join(args.universe[:20])}). "
            "Load data with 'strategyq data sample', 'strategyq data import' or "
            "'strategyq data synth'"
        )
    request = {
        "symbols": list(args.universe),
        "start": None,
        "end": datetime(as_of.year, as_of.month, as_of.day).isoformat(),
        "adjusted": True,
        "warmup_sessions": WARMUP_SESSIONS,
        "lookback_sessions": args.lookback_sessions or SCREENING_LOOKBACK_SESSIONS,
    }
    loaded, instances, _ = ctx.strategy_on(
        args.strategy_code, args.universe, request, "universe", strict=args.strict_symbols
    )
    payload = run_screening(
        instances,
        engine_market(loaded),
        limit=args.limit,
        universe=list(args.universe),
        as_of=as_of,
        max_instances=ctx.max_instances,
    )
    payload["warnings"] = data_warnings(loaded, ctx.market) + list(payload.get("warnings", []))
    payload.update(ctx.fork.last_logs.fields())
    return {"success": True, "execution_mode": "screening", **payload}
