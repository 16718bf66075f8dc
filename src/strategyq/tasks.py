"""Task orchestration: load market data, run the strategy in the sandbox, compute the result.

This runs inside the executor process (no Redis, no secrets). It composes
``data.load → sandbox.run(code, df) → engine`` and returns the result's
``data`` payload (without the worker's timing fields).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from strategyq.data import LoadResult, MarketData
from strategyq.engine import Market, market_from_frame, run_backtest, run_screening
from strategyq.errors import DataError
from strategyq.protocol import (
    TRADE_ARGS,
    BacktestArgs,
    ChunkArgs,
    ScreeningArgs,
    Task,
    TaskType,
)
from strategyq.sandbox.forkclient import ForkClient
from strategyq.settings import SandboxLimits
from strategyq.trademodel import TradeModel

log = logging.getLogger(__name__)

StageCallback = Callable[[str], None]

# Enough history for sma_200 plus the slower indicators to settle.
WARMUP_SESSIONS = 250
SCREENING_LOOKBACK_SESSIONS = 260


# The engine's flat view of a cached frame, kept as long as the loader keeps that
# frame: a repeated task (the same symbols and range) skips rebuilding it. Frames
# above the row cap are rebuilt each time, so the memo never holds much memory.
MARKET_MEMO_MAX_ROWS = 1_000_000
_markets: dict[int, tuple[weakref.ref[LoadResult], Market]] = {}


def engine_market(loaded: LoadResult) -> Market:
    """``market_from_frame(loaded.frame)``, built once per loaded (cached) frame."""
    key = id(loaded)
    entry = _markets.get(key)
    if entry is not None and entry[0]() is loaded:
        return entry[1]
    market = market_from_frame(loaded.frame)
    if len(loaded.frame) <= MARKET_MEMO_MAX_ROWS:
        _markets[key] = (weakref.ref(loaded, lambda _ref: _markets.pop(key, None)), market)
    return market


def _no_data_message(symbols: tuple[str, ...], loaded: LoadResult, what: str) -> str:
    parts = []
    if loaded.missing:
        parts.append(f"not in the store: {', '.join(loaded.missing[:20])}")
    if loaded.empty:
        ranges = "; ".join(
            f"{t} {loaded.ranges[t][0]}..{loaded.ranges[t][1]}"
            for t in loaded.empty[:20]
            if t in loaded.ranges
        )
        parts.append(f"no sessions in the range ({ranges})" if ranges else "no sessions")
    detail = "; ".join(parts) or "no rows"
    return (
        f"no market data for {what} {', '.join(symbols[:20])}: {detail}. "
        "Load data with 'strategyq data sample', 'strategyq data import' or "
        "'strategyq data synth', or pick symbols and dates that the store holds"
    )


def _data_warnings(loaded: LoadResult) -> list[str]:
    warnings = []
    if loaded.missing:
        warnings.append(f"symbols not in the store, skipped: {', '.join(loaded.missing)}")
    if loaded.empty:
        warnings.append(
            f"symbols with no sessions in the range, skipped: {', '.join(loaded.empty)}"
        )
    return warnings


@dataclass(frozen=True)
class _Run:
    """What one task run needs besides its arguments."""

    market: MarketData
    fork: ForkClient
    limits: SandboxLimits
    stage: StageCallback
    cancel_fd: int | None
    insecure: bool
    max_instances: int

    def strategy_on(
        self,
        code: str,
        symbols: tuple[str, ...],
        request: dict[str, Any],
        what: str,
        *,
        params: dict[str, Any] | None = None,
        runs: list[dict[str, Any]] | None = None,
        keep_columns: bool = False,
    ) -> tuple[LoadResult, list[Any], list[int]]:
        """Load the engine's frame, then run the strategy in a sandbox on the same data.

        Returns the engine's frame (bars only), the strategy's instances and the
        shape of the frame the strategy saw. What the strategy printed is in
        ``self.fork.last_logs``.
        """
        self.stage("loading_data")
        # The sandbox host loads its copy of the frame at the same time as we load ours.
        self.fork.prepare(request, self.limits, insecure_no_sandbox=self.insecure)
        loaded = self.market.load(
            request["symbols"],
            request["start"],
            request["end"],
            adjusted=request["adjusted"],
            warmup_sessions=request["warmup_sessions"],
            lookback_sessions=request["lookback_sessions"],
            history_sessions=request.get("history_sessions", 0),
            # The engine needs bars only; the strategy's frame (with indicators) lives
            # in the sandbox host.
            indicators=False,
        )
        if loaded.frame.empty:
            raise DataError(_no_data_message(symbols, loaded, what))
        self.stage("running_strategy")
        instances, meta = self.fork.run(
            code,
            request,
            self.limits,
            cancel_fd=self.cancel_fd,
            insecure_no_sandbox=self.insecure,
            params=params,
            runs=runs,
            keep_columns=keep_columns,
        )
        self.stage("computing_metrics")
        return loaded, instances, list(meta["shape"])


def run_task(
    task: Task,
    market: MarketData,
    fork: ForkClient,
    limits: SandboxLimits,
    *,
    stage: StageCallback,
    cancel_fd: int | None = None,
    insecure_no_sandbox: bool = False,
    max_instances: int = 10_000,
    chunk_size: int = 25,
) -> dict[str, Any]:
    """Run one parsed task and return its result payload (plain JSON values).

    A sweep returns its plan (``{"fanout": ...}``: the chunk tasks, of
    ``chunk_size`` strategy calls each, for the worker to queue).
    """
    run = _Run(
        market=market,
        fork=fork,
        limits=limits.capped(time_limit_s=task.options.timeout_s, memory_mb=task.options.memory_mb),
        stage=stage,
        cancel_fd=cancel_fd,
        insecure=insecure_no_sandbox,
        max_instances=min(max_instances, task.options.max_instances or max_instances),
    )
    if task.task_type is TaskType.BACKTEST:
        assert isinstance(task.args, BacktestArgs)
        return _backtest(task.args, run)
    if task.task_type is TaskType.SWEEP:
        from strategyq.sweep.execute import plan

        return plan(task, run, chunk_size)
    if task.task_type is TaskType.SWEEP_CHUNK:
        from strategyq.sweep.execute import run_chunk

        assert isinstance(task.args, ChunkArgs)
        return run_chunk(task.args, run)
    assert isinstance(task.args, ScreeningArgs)
    return _screening(task.args, run)


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


def _backtest(args: BacktestArgs, run: _Run) -> dict[str, Any]:
    request = backtest_request(args)
    params = dict(args.params) if args.params is not None else None
    loaded, instances, shape = run.strategy_on(
        args.strategy_code, args.symbols, request, "symbols", params=params
    )
    benchmark = _benchmark_bars(args, run.market) if args.benchmark else None
    payload = run_backtest(
        instances,
        engine_market(loaded),
        model_for(args, params),
        start=args.start,
        end=args.end,
        max_instances=run.max_instances,
        max_trades=run.max_instances,
        benchmark=benchmark,
        benchmark_symbol=args.benchmark,
    )
    summary = payload["summary"]
    summary["data_shape"] = shape
    summary["lookback_sessions"] = args.lookback_sessions
    summary["missing_symbols"] = list(loaded.missing) + list(loaded.empty)
    payload["warnings"] = _data_warnings(loaded) + list(payload.get("warnings", []))
    payload.update(run.fork.last_logs.fields())
    return {"success": True, "execution_mode": "backtest", **payload}


def _benchmark_bars(args: BacktestArgs, market: MarketData) -> Market:
    """The benchmark ticker's bars over the backtest's range (no indicators)."""
    assert args.benchmark is not None
    loaded = market.load(
        [args.benchmark],
        args.start,
        args.end,
        adjusted=args.adjusted,
        warmup_sessions=0,
        indicators=False,
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


def _screening(args: ScreeningArgs, run: _Run) -> dict[str, Any]:
    as_of = args.as_of or run.market.latest_session(list(args.universe))
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
    loaded, instances, _ = run.strategy_on(args.strategy_code, args.universe, request, "universe")
    payload = run_screening(
        instances,
        engine_market(loaded),
        limit=args.limit,
        universe=list(args.universe),
        as_of=as_of,
        max_instances=run.max_instances,
    )
    payload["warnings"] = _data_warnings(loaded) + list(payload.get("warnings", []))
    payload.update(run.fork.last_logs.fields())
    return {"success": True, "execution_mode": "screening", **payload}


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
