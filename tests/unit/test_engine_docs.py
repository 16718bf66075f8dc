"""docs/engine.md defines every metric, trade-model arg and summary count the engine emits."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd

from strategyq.engine import METRIC_NAMES, TradeModel, run_backtest

DOC = (Path(__file__).resolve().parents[2] / "docs" / "engine.md").read_text()


def test_every_metric_is_defined_in_the_docs_table() -> None:
    table = DOC.split("## Performance metrics", 1)[1].split("## Result shape", 1)[0]
    for name in METRIC_NAMES:
        assert f"`{name}`" in table, name


def test_every_trade_model_arg_is_in_the_docs_table() -> None:
    table = DOC.split("## Trade model", 1)[1].split("- **Signal's session**", 1)[0]
    for spec in dataclasses.fields(TradeModel):
        assert f"| `{spec.name}` |" in table, spec.name
    assert "| `lookback_sessions` |" in table and "| `benchmark` |" in table


def test_a_result_has_exactly_the_documented_metrics_and_counts() -> None:
    df = pd.DataFrame(
        {"ticker": "AAA", "date": pd.bdate_range("2024-01-01", periods=5), "open": 1.0,
         "high": 1.0, "low": 1.0, "close": 1.0}
    )  # fmt: skip
    result = run_backtest([{"ticker": "AAA", "date": "2024-01-02"}], df, TradeModel(),
                          start=None, end=None)  # fmt: skip
    assert tuple(result["performance_metrics"]) == METRIC_NAMES
    counts = [k for k, v in result["summary"].items() if k.startswith(("signals_", "entries_",
              "exits_", "trades_closed", "weights_", "unknown_"))]  # fmt: skip
    for key in counts:
        assert f"`{key}`" in DOC, key
