"""A single backtest read from columns reports, byte for byte, what its rows report.

The strategy's DataFrame goes through the result channel both ways — as
columns (``encode_result``, kept as columns by the parent) and as rows
(``encode_rows``, the only form before) — and ``run_backtest`` of each, then
the executor's ``leave_out_warmup``, must serialise to the same bytes:
metrics, trades, curves, warnings, counts and the instances echoed.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest

from strategyq.data import MarketData, write_synthetic
from strategyq.engine import Market, TradeModel, market_from_frame, run_backtest
from strategyq.engine.columnar import column_instances
from strategyq.engine.warmup import leave_out_warmup
from strategyq.errors import EngineError
from strategyq.executor.run.backtest import engine_instances
from strategyq.sandbox import result

MODELS = {
    "exits": TradeModel.from_args({"hold_days": None, "max_positions": 3}),
    "hold": TradeModel.from_args({"hold_days": 5, "max_positions": 4, "stop_loss_pct": 3.0}),
    "auto": TradeModel(hold_days="auto", max_positions=2, commission_bps=10.0),
}
START = datetime(2023, 9, 1)
END = datetime(2024, 6, 30)


@pytest.fixture(scope="module")
def bars(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    root: Path = tmp_path_factory.mktemp("columns-backtest") / "data"
    write_synthetic(root, 8, 2, seed=17)
    market = MarketData(root)
    return market.load(market.tickers(), None, None, indicators=False).frame


@pytest.fixture(scope="module")
def market(bars: pd.DataFrame) -> Market:
    return market_from_frame(bars)


def _picked(bars: pd.DataFrame, seed: int, rate: float = 0.05) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return bars.loc[rng.random(len(bars)) < rate, ["ticker", "date"]].reset_index(drop=True)


def _answers(bars: pd.DataFrame) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(3)
    plain = _picked(bars, 1)
    n = len(plain)
    flagged = plain.assign(entry=rng.random(n) < 0.6, exit=rng.random(n) < 0.5)
    unknown = plain.copy()
    unknown.loc[::9, "ticker"] = "NOPE"
    unknown.loc[::13, "ticker"] = "ZZZ"
    close = bars["close"].to_numpy()[: len(plain)].copy()
    close[::11] = np.nan
    return {
        "plain": plain,
        "entry and exit": flagged,
        "entry only": plain.assign(entry=rng.random(n) < 0.7),
        "exit only": plain.assign(exit=rng.random(n) < 0.3),
        "pass-through": flagged.assign(
            close=close,
            shares=rng.integers(1, 1000, n),
            note=[f"note {i}" for i in range(n)],
            flag=rng.random(n) < 0.5,
            f32=rng.standard_normal(n).astype(np.float32),
        ),
        "unknown tickers": unknown.assign(entry=rng.random(n) < 0.6, exit=rng.random(n) < 0.5),
        "string dates": flagged.assign(date=flagged["date"].dt.strftime("%Y-%m-%d")),
        "dates with a time": flagged.assign(date=flagged["date"] + pd.Timedelta(hours=15)),
        "dates in microseconds": flagged.assign(date=flagged["date"].astype("datetime64[us]")),
        "duplicate rows": pd.concat([flagged, flagged.iloc[::4]], ignore_index=True),
        "shuffled": flagged.sample(frac=1.0, random_state=4).reset_index(drop=True),
        "categorical ticker": flagged.assign(ticker=flagged["ticker"].astype("category")),
    }


def _both(frame: pd.DataFrame) -> tuple[Any, Any]:
    """The answer as the executor reads it now (columns), and as rows."""
    columns = engine_instances(result.decode(result.encode_result(frame), keep_columns=True))
    rows = engine_instances(result.decode(result.encode_rows(frame), keep_columns=True))
    return columns, rows


def _report(instances: Any, market: Market, model: TradeModel, **kw: Any) -> bytes:
    start = kw.pop("start", START)
    payload = run_backtest(instances, market, model, start=start, end=kw.pop("end", END), **kw)
    if start is not None:
        leave_out_warmup(payload, start)
    return orjson.dumps(payload)


@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.parametrize(
    "name",
    [
        "plain",
        "entry and exit",
        "entry only",
        "exit only",
        "pass-through",
        "unknown tickers",
        "string dates",
        "dates with a time",
        "dates in microseconds",
        "duplicate rows",
        "shuffled",
        "categorical ticker",
    ],
)
def test_a_frame_sent_as_columns_reports_what_its_rows_report(
    bars: pd.DataFrame, market: Market, name: str, model: str
) -> None:
    frame = _answers(bars)[name]
    columns, rows = _both(frame)
    assert isinstance(columns, dict) and isinstance(rows, list)
    assert column_instances(columns, market, None) is not None  # the column path is taken
    for start in (START, None):  # warm-up signals before START, and none
        for cap in (10_000, 7, 0):  # every instance echoed, a prefix, none
            got = _report(columns, market, MODELS[model], start=start, max_instances=cap)
            want = _report(rows, market, MODELS[model], start=start, max_instances=cap)
            assert got == want


def test_the_report_holds_what_the_columns_must_reproduce(
    bars: pd.DataFrame, market: Market
) -> None:
    # The comparison above is only as good as what the report exercises.
    columns, _ = _both(_answers(bars)["unknown tickers"])
    payload = orjson.loads(_report(columns, market, MODELS["exits"], max_instances=7))
    summary = payload["summary"]
    assert summary["warmup_instances"] > 0 and summary["unknown_ticker_instances"] > 0
    assert summary["num_trades"] > 0 and summary["exit_signals"] > 0
    assert len(payload["instances"]) < 7 and payload["summary"]["instances_truncated"]
    assert any("NOPE" in w for w in payload["warnings"])
    assert any("exit_instance_index" in t for t in payload["trades"])
    assert {i["action"] for i in payload["instances"]} <= {"entry", "exit"}


def _columns(frame: pd.DataFrame) -> dict[str, list[Any]]:
    decoded = result.decode(result.encode_result(frame), keep_columns=True)
    assert isinstance(decoded, result.ColumnRun)
    return decoded.columns


def _rows(columns: dict[str, list[Any]]) -> list[dict[str, Any]]:
    names = list(columns)
    return [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]


def test_nulls_offsets_and_time_zones_read_column_wise(bars: pd.DataFrame, market: Market) -> None:
    columns = _columns(_answers(bars)["entry and exit"])
    n = len(columns["ticker"])
    varied = {
        **columns,
        "note": [None if i % 3 else f"n{i}" for i in range(n)],
        "value": [None if i % 4 else 1.5 for i in range(n)],
        "date": [
            d[:10] + ("T00:00:00+00:00", "T00:00:00Z", "T09:30:00-05:00")[i % 3]
            for i, d in enumerate(columns["date"])
        ],
    }
    assert column_instances(varied, market, None) is not None
    for model in MODELS.values():
        assert _report(varied, market, model) == _report(_rows(varied), market, model)


@pytest.mark.parametrize(
    "change",
    [
        {"signal": lambda i: i % 3 != 0},
        {"score": lambda i: float(i % 5)},
        {"direction": lambda i: "short" if i % 2 else "long"},
        {"weight": lambda i: 0.2},
        {"action": lambda i: "exit" if i % 4 == 0 else "entry"},
        {"ticker": lambda i: " SYN0001"},
        {"entry": lambda i: 1},
        {"date": lambda i: None if i == 3 else "2024-01-02"},
    ],
    ids=["signal", "score", "direction", "weight", "action", "blank", "int flag", "no date"],
)
def test_fields_read_per_instance_take_the_rows_with_the_same_report(
    bars: pd.DataFrame, market: Market, change: dict[str, Any]
) -> None:
    columns = _columns(_answers(bars)["entry and exit"])
    n = len(columns["ticker"])
    ((name, make),) = change.items()
    varied = {**columns, name: [make(i) for i in range(n)]}
    assert column_instances(varied, market, None) is None
    assert _report(varied, market, MODELS["exits"]) == _report(
        _rows(varied), market, MODELS["exits"]
    )


@pytest.mark.parametrize(
    ("name", "values"),
    [("date", ["not a date"]), ("ticker", [""]), ("ticker", [7])],
)
def test_a_bad_instance_fails_with_the_rows_message(
    bars: pd.DataFrame, market: Market, name: str, values: list[Any]
) -> None:
    columns = _columns(_answers(bars)["plain"])
    n = len(columns["ticker"])
    bad = {**columns, name: columns[name][:5] + values + columns[name][6:n]}
    with pytest.raises(EngineError) as want:
        run_backtest(_rows(bad), market, MODELS["exits"], start=START, end=END)
    with pytest.raises(EngineError) as got:
        run_backtest(bad, market, MODELS["exits"], start=START, end=END)
    assert str(got.value) == str(want.value)
    assert "instance 5" in str(got.value)


def test_an_empty_columns_answer_is_an_empty_backtest(market: Market) -> None:
    empty = engine_instances(result.ColumnRun({}))
    assert empty == []
    none = {"ticker": [], "date": []}
    assert _report(none, market, MODELS["exits"]) == _report([], market, MODELS["exits"])
