"""The executor's side of a sweep: plan its folds, and run one chunk.

A chunk's combinations all run in **one** sandbox child on one frame: the
child calls the strategy once per combination (and, for a walk-forward, once
per fold window), and the engine here turns each call's instances into a
backtest. Each combination's metrics are exactly those a single backtest
with the same ``params`` reports: the same frame, the same engine, the same
trade model.
"""

from __future__ import annotations

import ast
import datetime as dt
from dataclasses import dataclass
from typing import Any

import numpy as np

from strategyq.data import LoadResult
from strategyq.engine import Market, backtest_metrics_grid, backtest_metrics_many, run_backtest
from strategyq.engine.warmup import leave_out_warmup
from strategyq.errors import BadResult, DataError, TaskValidationError
from strategyq.executor.run.backtest import (
    backtest_request,
    backtest_result,
    benchmark_bars,
    engine_instances,
    model_for,
)
from strategyq.executor.run.context import (
    ENGINE_BARS,
    RunContext,
    engine_market,
    no_data_message,
    refuse_missing,
)
from strategyq.executor.run.heap import keep_scratch_memory
from strategyq.protocol.chunks import chunk_messages, fanout
from strategyq.protocol.results import Stage
from strategyq.protocol.task import BacktestArgs, ChunkArgs, SweepArgs, Task
from strategyq.sandbox import checker
from strategyq.sandbox.forkclient import checked_program
from strategyq.sandbox.result import ColumnRun
from strategyq.sweep import folds as folding
from strategyq.sweep.rank import best


def plan(task: Task, ctx: RunContext) -> dict[str, Any]:
    """The sweep's plan and its chunk tasks, for the worker to queue.

    Loads the range's bars first, so a sweep over symbols or dates the store
    does not hold fails at once, with the data error, before any chunk runs;
    a walk-forward's folds are cut from the range's sessions.
    """
    args = task.args
    assert isinstance(args, SweepArgs)
    bt = args.backtest
    # The policy error (or a strategy that takes no params) now, not once per chunk.
    checked_program(bt.strategy_code)
    report = checker.check(bt.strategy_code)
    if not report.takes_params:
        raise TaskValidationError(
            f"a sweep calls the strategy with each combination as its second argument: define "
            f"it as `def {report.entry}(df, params): ...` and read params['name']"
        )
    ctx.stage(Stage.LOADING_DATA)
    if bt.strict_symbols:
        refuse_missing(bt.symbols, ctx.market)
    loaded = ctx.market.load(
        list(bt.symbols),
        bt.start,
        bt.end,
        adjusted=bt.adjusted,
        warmup_sessions=0,
        indicators=False,
        bar_columns=ENGINE_BARS,
    )
    if loaded.frame.empty:
        raise DataError(no_data_message(bt.symbols, loaded, "symbols", ctx.market))
    folds = sessions = left_out = None
    if args.walk_forward is not None:
        dates = np.unique(loaded.frame["date"].to_numpy().astype("datetime64[D]"))
        calendar = [d.item() for d in dates]
        made = folding.split(calendar, args.walk_forward)
        folds = [f.to_json() for f in made]
        sessions, left_out = len(calendar), len(calendar) - made[-1].test[1]
    chunks = chunk_messages(
        task,
        folds,
        ctx.chunk_size,
        ctx.max_fanout_bytes,
        whole_grid=takes_grid(bt.strategy_code),
    )
    return fanout(
        {
            "names": list(args.grid.names),
            "axes": {k: list(v) for k, v in args.grid.axes.items()},
            "maximize": args.maximize,
            "top_n": args.top_n,
            "constraint": args.constraint,
            "heatmap": list(args.heatmap) if args.heatmap else None,
            "expanded": args.grid.expanded,
            "total": len(args.grid),
            "chunks": len(chunks),
            "walk_forward": args.walk_forward.to_json() if args.walk_forward else None,
            "folds": folds,
            "sessions": sessions,
            "sessions_left_out": left_out,
            "date_range": [bt.start_raw, bt.end_raw],
            "symbols": list(bt.symbols),
        },
        chunks,
    )


def _day(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def run_chunk(task: Task, ctx: RunContext) -> dict[str, Any]:
    """Run every combination of the chunk in one child; return their metrics.

    Without walk-forward: ``{"rows": [{"index", "params", "metrics"}], "best":
    {"index", "params", "result"}}`` where ``result`` is the full backtest of
    the chunk's best combination. With it: per fold the training metrics of
    every combination and, for the chunk's best in training, its test-window
    metrics and equity curve.
    """
    args = task.args
    assert isinstance(args, ChunkArgs)
    keep_scratch_memory()
    bt = args.backtest
    request = backtest_request(bt)
    grid = takes_grid(bt.strategy_code)
    loaded, outputs, shape = ctx.strategy_on(
        bt.strategy_code,
        bt.symbols,
        request,
        "symbols",
        runs=_grid_calls(args) if grid else _calls(args),
        keep_columns=True,
    )
    answer = outputs[0] if grid and args.folds is None else None
    if grid:
        outputs = _split_grid(args, outputs)
    market = engine_market(loaded)
    bench = benchmark_bars(bt, ctx.market) if bt.benchmark else None
    ctx.stage(Stage.COMPUTING_METRICS)
    engine = _ChunkEngine(bt, market, bench, ctx.max_instances)
    if args.folds is None:
        return _whole_range(args, engine, outputs, loaded, shape, answer)
    return {"folds": _walk_forward(args, args.folds, engine, outputs)}


def _calls(args: ChunkArgs) -> list[dict[str, Any]]:
    """The strategy calls of a chunk: one per combination, or two per combination and fold."""
    if args.folds is None:
        return [{"params": p, "until": None} for _, p in args.combinations]
    return [
        {"params": p, "until": until}
        for _, p in args.combinations
        for f in args.folds
        for until in (f["train_end"], f["test_end"])
    ]


GRID_ARG = "grid"
"""The name of the second argument that marks a whole-grid entry ``f(df, grid)``."""
COMBINATION = "combination"
"""The column of a whole-grid entry's rows naming the combination (its position in ``grid``)."""


def takes_grid(source: str) -> bool:
    """Whether the strategy's entry is ``f(df, grid)``: one call for all combinations.

    True when exactly one top-level public function takes a second positional
    parameter named ``grid``; the policy checker picks and checks the entry itself.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return False
    found = [
        node
        for node in tree.body
        if isinstance(node, ast.FunctionDef)
        and not node.name.startswith("_")
        and len(positional := [*node.args.posonlyargs, *node.args.args]) >= 2
        and positional[1].arg == GRID_ARG
    ]
    return len(found) == 1


def _grid_of(args: ChunkArgs) -> dict[str, list[Any]]:
    """The chunk's combinations as columns: ``grid[name][i]`` is combination i's value."""
    names: list[str] = []
    for _, params in args.combinations:
        names.extend(n for n in params if n not in names)
    return {n: [params.get(n) for _, params in args.combinations] for n in names}


def _grid_calls(args: ChunkArgs) -> list[dict[str, Any]]:
    """A whole-grid entry's calls: one for the range, or two per fold (train, test)."""
    grid = _grid_of(args)
    if args.folds is None:
        return [{"params": grid, "until": None}]
    return [
        {"params": grid, "until": until}
        for f in args.folds
        for until in (f["train_end"], f["test_end"])
    ]


def _split_grid(args: ChunkArgs, outputs: list[Any]) -> list[Any]:
    """Each grid call's rows split by combination, laid out as ``_calls`` lays out calls."""
    n = len(args.combinations)
    split = [_by_combination(output, n) for output in outputs]
    if args.folds is None:
        return split[0]
    n_folds = len(args.folds)
    return [split[k * 2 + j][c] for c in range(n) for k in range(n_folds) for j in range(2)]


def _by_combination(output: Any, n: int) -> list[Any]:
    """One output of ``f(df, grid)`` as ``n`` outputs, one per combination, in grid order.

    Each combination gets its rows, in the order returned, without the combination
    column: what a call with that combination's params alone would have returned.
    """
    if isinstance(output, ColumnRun):
        columns = output.columns
        if not columns or not next(iter(columns.values())):
            return [ColumnRun({}) for _ in range(n)]
        which = columns.get(COMBINATION)
    else:
        which = [row.get(COMBINATION) for row in output] if output else []
        if not output:
            return [[] for _ in range(n)]
    if which is None or any(v is None for v in which):
        raise BadResult(
            f"a strategy defined as f(df, {GRID_ARG}) returns one row per instance with a "
            f"'{COMBINATION}' field: the position of the instance's combination in "
            f"{GRID_ARG} (0 to {n - 1})"
        )
    bad = [v for v in which if type(v) is not int or not 0 <= v < n]
    if bad:
        raise BadResult(
            f"'{COMBINATION}' must be a whole number from 0 to {n - 1} (the position in "
            f"{GRID_ARG}); got {bad[0]!r}"
        )
    codes = np.asarray(which, dtype=np.int64)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(n + 1))
    if not isinstance(output, ColumnRun):
        rows = [{k: v for k, v in row.items() if k != COMBINATION} for row in output]
        return [[rows[i] for i in order[bounds[c] : bounds[c + 1]]] for c in range(n)]
    rest = {
        k: np.asarray(v, dtype=object)[order] for k, v in output.columns.items() if k != COMBINATION
    }
    return [
        ColumnRun({k: v[bounds[c] : bounds[c + 1]].tolist() for k, v in rest.items()})
        for c in range(n)
    ]


@dataclass(frozen=True)
class _ChunkEngine:
    """The engine's calls for one chunk: its backtest args, market and benchmark."""

    bt: BacktestArgs
    market: Market
    bench: Market | None
    max_instances: int

    def backtest(
        self,
        instances: Any,
        params: dict[str, Any],
        start: dt.datetime,
        end: dt.datetime,
        full: bool,
    ) -> dict[str, Any]:
        """The backtest of one call's instances with ``params``'s trade model."""
        bt = self.bt
        # Full: every list a backtest task returns, for the best and the test windows.
        cap = self.max_instances if full else 0
        payload = run_backtest(
            engine_instances(instances),
            self.market,
            model_for(bt, params),
            start=start,
            end=end,
            max_instances=cap,
            max_trades=cap,
            benchmark=self.bench,
            benchmark_symbol=bt.benchmark,
        )
        return leave_out_warmup(payload, start)

    def metrics(
        self,
        outputs: list[Any],
        params: list[dict[str, Any]],
        start: dt.datetime,
        end: dt.datetime,
        answer: Any = None,
    ) -> list[dict[str, Any]]:
        """The performance metrics alone of each call's instances, with its params.

        All calls are simulated together (calls sharing a trade model in one
        pass); each one's metrics equal those of its single backtest.
        ``answer``: the one whole-grid answer ``outputs`` were split from, read
        in one pass when its columns allow it.
        """
        bt = self.bt
        models = [model_for(bt, p) for p in params]
        if isinstance(answer, ColumnRun) and COMBINATION in answer.columns:
            columns = {k: v for k, v in answer.columns.items() if k != COMBINATION}
            measured = backtest_metrics_grid(
                columns,
                answer.columns[COMBINATION],
                self.market,
                models,
                start=start,
                end=end,
                benchmark=self.bench,
                benchmark_symbol=bt.benchmark,
            )
            if measured is not None:
                return measured
        # The metrics alone, read from the columns when the child sent them so.
        given = [o.columns if isinstance(o, ColumnRun) else o for o in outputs]
        return backtest_metrics_many(
            given,
            self.market,
            models,
            start=start,
            end=end,
            benchmark=self.bench,
            benchmark_symbol=bt.benchmark,
        )


def _whole_range(
    args: ChunkArgs,
    engine: _ChunkEngine,
    outputs: list[Any],
    loaded: LoadResult,
    shape: list[int],
    answer: Any = None,
) -> dict[str, Any]:
    """Every combination's metrics over the whole range, and the best one's full backtest.

    ``answer``: a whole-grid strategy's one answer, which ``outputs`` were split from.
    """
    bt = args.backtest
    params = [p for _, p in args.combinations]
    measured = engine.metrics(outputs, params, bt.start, bt.end, answer)
    rows = [
        {"index": index, "params": params, "metrics": metrics}
        for (index, params), metrics in zip(args.combinations, measured, strict=True)
    ]
    top = best(rows, args.maximize)
    position = next(i for i, (index, _) in enumerate(args.combinations) if index == top["index"])
    result = engine.backtest(outputs[position], dict(top["params"]), bt.start, bt.end, True)
    # As a single backtest with these params reports it.
    result = backtest_result(result, bt, loaded, shape)
    return {
        "rows": rows,
        "best": {"index": top["index"], "params": top["params"], "result": result},
    }


def _walk_forward(
    args: ChunkArgs,
    folds: tuple[dict[str, Any], ...],
    engine: _ChunkEngine,
    outputs: list[Any],
) -> list[dict[str, Any]]:
    """Per fold: every combination's training metrics, and the best one's test window."""
    per_fold: list[dict[str, Any]] = []
    n_folds = len(folds)
    for k, fold in enumerate(folds):
        train_start, train_end = _day(fold["train_start"]), _day(fold["train_end"])
        every = [p for _, p in args.combinations]
        trains = engine.metrics(
            [outputs[(c * n_folds + k) * 2] for c in range(len(every))],
            every,
            train_start,
            train_end,
        )
        train_rows, tests = [], {}
        for c, ((index, params), train) in enumerate(zip(args.combinations, trains, strict=True)):
            train_rows.append({"index": index, "params": params, "metrics": train})
            tests[index] = (outputs[(c * n_folds + k) * 2 + 1], params)
        top = best(train_rows, args.maximize)
        test_out, params = tests[int(top["index"])]
        test_start, test_end = _day(fold["test_start"]), _day(fold["test_end"])
        test = engine.backtest(test_out, params, test_start, test_end, False)
        per_fold.append(
            {
                "fold": fold["fold"],
                "rows": train_rows,
                "best": {
                    "index": top["index"],
                    "params": top["params"],
                    "train": top["metrics"],
                    "test": test["performance_metrics"],
                    "test_curve": test["equity_curve"],
                    "initial_capital": test["summary"]["initial_capital"],
                },
            }
        )
    return per_fold
