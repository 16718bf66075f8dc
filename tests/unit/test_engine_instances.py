"""Instances → normalised records: dates, defaults, JSON values, errors and counted warnings."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest

from strategyq.engine import TradeModel, normalize_instances, run_backtest
from strategyq.errors import EngineError

DATE_FORMS = [
    "2024-01-15",
    "2024-01-15 00:00:00",
    "2024-01-15T00:00:00",
    "2024-01-15T00:00:00Z",
    "2024-01-15T00:00:00+00:00",
    "2024-01-15T09:30:00-05:00",
    pd.Timestamp("2024-01-15"),
    dt.date(2024, 1, 15),
    dt.datetime(2024, 1, 15, 16, 0),
    np.datetime64("2024-01-15"),
]


@pytest.mark.parametrize("value", DATE_FORMS, ids=repr)
def test_every_date_form_becomes_iso_day(value: object) -> None:
    result = normalize_instances([{"ticker": "AAPL", "date": value}])
    assert result.records[0]["date"] == "2024-01-15"
    assert result.days == [dt.date(2024, 1, 15)]


def test_signal_defaults_to_true_and_other_fields_pass_through() -> None:
    result = normalize_instances([{"ticker": "AAPL", "gap_percent": 3.5, "tags": ("a", "b")}])
    assert result.records == [
        {"ticker": "AAPL", "gap_percent": 3.5, "tags": ["a", "b"], "signal": True}
    ]
    assert result.active == [True] and result.positive_signals == 1


@pytest.mark.parametrize(
    ("signal", "active"),
    [(False, False), (0, False), ("false", False), ("No", False), (None, False),
     (True, True), (1, True), ("buy", True), (np.bool_(True), True)],
)  # fmt: skip
def test_signal_truthiness(signal: object, active: bool) -> None:
    assert normalize_instances([{"ticker": "X", "signal": signal}]).active == [active]


def test_numpy_scalars_become_python_and_nan_becomes_null() -> None:
    raw = [
        {
            "ticker": np.str_("AAPL"),
            "score": np.float64(1.5),
            "volume": np.int64(7),
            "flag": np.bool_(False),
            "gap": float("nan"),
            "up": np.float32("inf"),
            "nested": {"a": [np.float64("-inf"), pd.NaT, pd.Timestamp("2024-01-02 10:00")]},
        }
    ]
    record = normalize_instances(raw).records[0]
    assert record == {
        "ticker": "AAPL",
        "score": 1.5,
        "volume": 7,
        "flag": False,
        "gap": None,
        "up": None,
        "nested": {"a": [None, None, "2024-01-02T10:00:00"]},
        "signal": True,
    }
    assert [type(record[k]) for k in ("ticker", "score", "volume", "flag")] == [
        str,
        float,
        int,
        bool,
    ]
    json.dumps(record, allow_nan=False)


def test_nan_score_ranks_as_missing() -> None:
    assert normalize_instances([{"ticker": "X", "score": np.nan}]).scores == [None]


def test_dataframe_of_rows_is_accepted() -> None:
    frame = pd.DataFrame(
        {
            "ticker": ["A", "B"],
            "date": pd.to_datetime(["2024-01-15", "2024-01-16"]),
            "x": [1.0, np.nan],
        }
    )
    result = normalize_instances(frame)
    assert [r["date"] for r in result.records] == ["2024-01-15", "2024-01-16"]
    assert result.records[1]["x"] is None


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ([{"date": "2024-01-15"}], "instance 0 has no 'ticker'"),
        ([{"ticker": "A"}, {"ticker": ""}], "instance 1 has ticker=''"),
        ([{"ticker": 5}], "instance 0 has ticker=5"),
        ([{"ticker": "A", "date": "someday"}], "instance 0 field 'date'"),
        ([{"ticker": "A", "date": 20240115}], "instance 0 field 'date'"),
        ([{"ticker": "A"}, {"ticker": "B", "obj": object()}], "instance 1 field 'obj'"),
        ([{"ticker": "A", "deep": {"set": {1, 2}}}], "instance 0 field 'deep.set'"),
        ([{"ticker": "A", "m": {1: 2}}], "instance 0 field 'm[1]'"),
        ([{"ticker": "A", "direction": "sideways"}], "instance 0 field 'direction'"),
        ([{"ticker": "A", "score": "high"}], "instance 0 field 'score'"),
        ([{"ticker": "A"}, ["B"]], "instance 1 is a list"),
        ({"ticker": "A"}, "the strategy returned a dict"),
        (None, "the strategy returned a NoneType"),
    ],
)
def test_bad_instances_raise_naming_index_and_field(raw: object, needle: str) -> None:
    with pytest.raises(EngineError) as info:
        normalize_instances(raw)
    assert needle in str(info.value)
    assert info.value.error_type == "bad_result"


def test_too_deep_nesting_is_an_error() -> None:
    value: object = 1
    for _ in range(40):
        value = [value]
    with pytest.raises(EngineError, match=r"instance 0 field 'x.*deeper than"):
        normalize_instances([{"ticker": "A", "x": value}])


def test_unknown_ticker_is_counted_not_fatal() -> None:
    result = normalize_instances([{"ticker": "A"}, {"ticker": "ZZZ"}], known_tickers={"A"})
    assert result.unknown_tickers == [1]


def bars() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ticker": "AAA",
            "date": pd.bdate_range("2024-01-01", periods=5),
            "open": 10.0, "high": 11.0, "low": 9.0, "close": 10.0, "volume": 1.0,
        }
    )  # fmt: skip


def test_backtest_counts_unknown_tickers_and_dates_outside_the_data() -> None:
    instances = [
        {"ticker": "AAA", "date": "2024-01-02"},
        {"ticker": "NOPE", "date": "2024-01-02"},
        {"ticker": "AAA", "date": "2023-06-01"},
        {"ticker": "AAA", "date": "2025-01-01"},
        {"ticker": "AAA"},
    ]
    result = run_backtest(instances, bars(), TradeModel(), start=None, end=None)
    summary = result["summary"]
    assert summary["unknown_ticker_instances"] == 1
    assert summary["signals_outside_data"] == 2
    assert summary["signals_without_date"] == 1
    assert len(result["trades"]) == 1
    assert any("NOPE" in w for w in result["warnings"])
    assert summary["total_instances"] == 5 and len(result["instances"]) == 5


def test_instances_are_capped_but_all_counted() -> None:
    instances = [{"ticker": "AAA", "date": "2024-01-01", "signal": i % 2 == 0} for i in range(25)]
    result = run_backtest(
        instances, bars(), TradeModel(max_positions=100, max_entries_per_ticker=0), start=None,
        end=None, max_instances=10,
        max_trades=4,
    )  # fmt: skip
    summary = result["summary"]
    assert len(result["instances"]) == 10 and summary["instances_truncated"] is True
    assert summary["total_instances"] == 25 and summary["positive_signals"] == 13
    assert len(result["trades"]) == 4 and summary["trades_truncated"] is True
    assert summary["num_trades"] == 13
