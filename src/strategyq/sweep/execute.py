"""The executor's side of a sweep: plan its folds, and run one chunk.

A chunk's combinations all run in **one** sandbox child on one frame: the
child calls the strategy once per combination (and, for a walk-forward, once
per fold window), and the engine here turns each call's instances into a
backtest. Each combination's metrics are exactly those a single backtest
with the same ``params`` reports: the same frame, the same engine, the same
trade model.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import fields
from typing import TYPE_CHECKING, Any

import numpy as np

from strategyq.engine import TradeModel, run_backtest
from strategyq.errors import DataError
from strategyq.protocol import BacktestArgs, ChunkArgs, SweepArgs
from strategyq.sweep import folds as folding
from strategyq.sweep.rank import best

if TYPE_CHECKING:
    from strategyq.tasks import _Run

TRADE_ARGS = frozenset(f.name for f in fields(TradeModel))
"""Parameters with these names also set the trade model (``hold_days``, ``stop_loss_pct``, …)."""


def request_for(args: BacktestArgs) -> dict[str, Any]:
    from strategyq.tasks import WARMUP_SESSIONS

    return {
        "symbols": list(args.symbols),
        "start": args.start.isoformat(),
        "end": args.end.isoformat(),
        "adjusted": args.adjusted,
        "warmup_sessions": WARMUP_SESSIONS,
        "lookback_sessions": None,
    }


def plan(args: SweepArgs, run: _Run) -> dict[str, Any]:
    """What the worker needs to fan the sweep out: the walk-forward folds, if any.

    Loads the range's bars first, so a sweep over symbols or dates the store
    does not hold fails at once, with the data error, before any chunk runs.
    """
    from strategyq.tasks import _no_data_message

    bt = args.backtest
    run.stage("loading_data")
    loaded = run.market.load(
        list(bt.symbols), bt.start, bt.end, adjusted=bt.adjusted, warmup_sessions=0,
        indicators=False,
    )  # fmt: skip
    if loaded.frame.empty:
        raise DataError(_no_data_message(bt.symbols, loaded, "symbols"))
    out: dict[str, Any] = {"fanout": True, "folds": None}
    if args.walk_forward is not None:
        dates = np.unique(loaded.frame["date"].to_numpy().astype("datetime64[D]"))
        sessions = [d.item() for d in dates]
        made = folding.split(sessions, args.walk_forward)
        out["folds"] = [f.to_json() for f in made]
        out["sessions"] = len(sessions)
        out["sessions_left_out"] = len(sessions) - made[-1].test[1]
    return out


def _model(args: BacktestArgs, params: dict[str, Any]) -> TradeModel:
    overrides = {k: v for k, v in params.items() if k in TRADE_ARGS}
    return TradeModel.from_args({**args.trade_args, **overrides} if overrides else args.trade_args)


def _day(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def run_chunk(args: ChunkArgs, run: _Run) -> dict[str, Any]:
    """Run every combination of the chunk in one child; return their metrics.

    Without walk-forward: ``{"rows": [{"index", "params", "metrics"}], "best":
    {"index", "params", "result"}}`` where ``result`` is the full backtest of
    the chunk's best combination. With it: per fold the training metrics of
    every combination and, for the chunk's best in training, its test-window
    metrics and equity curve.
    """
    from strategyq.tasks import engine_market

    bt = args.backtest
    request = request_for(bt)
    if args.folds is None:
        calls = [{"params": p, "until": None} for _, p in args.combinations]
    else:
        calls = [
            {"params": p, "until": until}
            for _, p in args.combinations
            for f in args.folds
            for until in (f["train_end"], f["test_end"])
        ]
    loaded, outputs, _shape = run.strategy_on(
        bt.strategy_code, bt.symbols, request, "symbols", runs=calls
    )
    market = engine_market(loaded)
    run.stage("computing_metrics")

    def backtest(
        instances: Any, params: dict[str, Any], start: dt.datetime, end: dt.datetime, full: bool
    ) -> dict[str, Any]:
        cap = run.max_instances if full else 0
        return run_backtest(
            instances, market, _model(bt, params), start=start, end=end,
            max_instances=cap, max_trades=cap,
        )  # fmt: skip

    if args.folds is None:
        rows = []
        for (index, params), instances in zip(args.combinations, outputs, strict=True):
            payload = backtest(instances, params, bt.start, bt.end, False)
            rows.append(
                {"index": index, "params": params, "metrics": payload["performance_metrics"]}
            )
        top = best(rows, args.maximize)
        position = next(
            i for i, (index, _) in enumerate(args.combinations) if index == top["index"]
        )
        result = backtest(outputs[position], dict(top["params"]), bt.start, bt.end, True)
        result["summary"]["date_range"] = [bt.start_raw, bt.end_raw]
        return {
            "rows": rows,
            "best": {"index": top["index"], "params": top["params"], "result": result},
        }
    per_fold: list[dict[str, Any]] = []
    n_folds = len(args.folds)
    for k, fold in enumerate(args.folds):
        train_rows, tests = [], {}
        for c, (index, params) in enumerate(args.combinations):
            train_out = outputs[(c * n_folds + k) * 2]
            test_out = outputs[(c * n_folds + k) * 2 + 1]
            train = backtest(
                train_out, params, _day(fold["train_start"]), _day(fold["train_end"]), False
            )
            train_rows.append(
                {"index": index, "params": params, "metrics": train["performance_metrics"]}
            )
            tests[index] = (test_out, params)
        top = best(train_rows, args.maximize)
        test_out, params = tests[int(top["index"])]
        test = backtest(test_out, params, _day(fold["test_start"]), _day(fold["test_end"]), False)
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
    return {"folds": per_fold}
