"""A backtest task: its data request, its trade model, the engine run on its instances."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from strategyq.data import LoadResult, MarketData
from strategyq.engine import Market, run_backtest
from strategyq.engine.warmup import leave_out_warmup
from strategyq.errors import DataError
from strategyq.executor.run.context import (
    ENGINE_BARS,
    WARMUP_SESSIONS,
    RunContext,
    data_warnings,
    engine_market,
)
from strategyq.protocol.task import TRADE_ARGS, BacktestArgs, Task
from strategyq.sandbox.result import ColumnRun
from strategyq.trademodel import TradeModel


def backtest_request(args: BacktestArgs) -> dict[str, Any]:
    """The sandbox host's data request for a backtest (a sweep's chunks use the same)."""
    return {
        "symbols": list(args.symbols),
        "start": args.start.isoformat(),
        "end": args.end.isoformat(),
        "adjusted": args.adjusted,
        "warmup_sessions": WARMUP_SESSIONS,
        "lookback_sessions": None,
        "history_sessions": args.lookback_sessions,
    }


def model_for(args: BacktestArgs, params: Mapping[str, Any] | None) -> TradeModel:
    """The trade model of one run: params named like trade-model args set them too."""
    overrides = {k: v for k, v in (params or {}).items() if k in TRADE_ARGS}
    if not overrides:
        return args.model
    return TradeModel.from_args({**args.trade_args, **overrides})


def run(task: Task, ctx: RunContext) -> dict[str, Any]:
    args = task.args
    assert isinstance(args, BacktestArgs)
    request = backtest_request(args)
    params = dict(args.params) if args.params is not None else None
    loaded, instances, shape = ctx.strategy_on(
        args.strategy_code,
        args.symbols,
        request,
        "symbols",
        params=params,
        keep_columns=True,
        strict=args.strict_symbols,
    )
    benchmark = benchmark_bars(args, ctx.market) if args.benchmark else None
    payload = run_backtest(
        engine_instances(instances),
        engine_market(loaded),
        model_for(args, params),
        start=args.start,
        end=args.end,
        max_instances=ctx.max_instances,
        max_trades=ctx.max_instances,
        benchmark=benchmark,
        benchmark_symbol=args.benchmark,
    )
    leave_out_warmup(payload, args.start)
    payload.update(ctx.fork.last_logs.fields())
    return backtest_result(payload, args, loaded, shape, ctx.market)


def engine_instances(answer: Any) -> Any:
    """A child's answer as ``run_backtest`` takes it: a DataFrame sent as columns stays
    columns (read column-wise when they allow it; the result is the same), rows stay rows."""
    if isinstance(answer, ColumnRun):
        return answer.columns if answer.columns else answer.rows()
    return answer


def backtest_result(
    payload: dict[str, Any],
    args: BacktestArgs,
    loaded: LoadResult,
    shape: list[int],
    market: MarketData | None = None,
) -> dict[str, Any]:
    """The engine's backtest with what the task adds: the data's shape and notes.

    ``market``: the store, to name the stored tickers nearest a missing one.
    """
    summary = payload["summary"]
    summary["data_shape"] = shape
    summary["lookback_sessions"] = args.lookback_sessions
    summary["missing_symbols"] = list(loaded.missing) + list(loaded.empty)
    payload["warnings"] = data_warnings(loaded, market) + list(payload.get("warnings", []))
    return {"success": True, "execution_mode": "backtest", **payload}


def benchmark_bars(args: BacktestArgs, market: MarketData) -> Market:
    """The benchmark ticker's bars over the backtest's range (no indicators)."""
    assert args.benchmark is not None
    loaded = market.load(
        [args.benchmark],
        args.start,
        args.end,
        adjusted=args.adjusted,
        warmup_sessions=0,
        indicators=False,
        bar_columns=ENGINE_BARS,
    )
    if loaded.frame.empty:
        where = (
            "is not in the store"
            if loaded.missing
            else f"has no sessions from {args.start.date()} to {args.end.date()}"
        )
        raise DataError(
            f"the benchmark {args.benchmark} {where}; import its bars (strategyq data import) "
            "or pick another benchmark ticker"
        )
    return engine_market(loaded)
