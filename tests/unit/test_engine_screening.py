"""Screening: current opportunities on as_of, ranking, limits, missing and stale symbols."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pytest

from strategyq.engine import run_screening
from strategyq.errors import EngineError, TaskValidationError


def bars(ticker: str, last: str, sessions: int = 3) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ticker": ticker,
            "date": pd.bdate_range(end=last, periods=sessions),
            "open": 1.0, "high": 1.0, "low": 1.0, "close": 1.0, "volume": 1.0,
        }
    )  # fmt: skip


DF = pd.concat(
    [bars("AAA", "2024-03-08"), bars("BBB", "2024-03-08"), bars("OLD", "2024-03-06")],
    ignore_index=True,
)
UNIVERSE = ["AAA", "BBB", "OLD", "GONE"]


def test_ranks_by_score_strength_signal_ticker() -> None:
    instances = [
        {"ticker": "BBB", "score": 1.0, "signal_strength": 2},
        {"ticker": "AAA", "score": 1.0, "signal_strength": 2},
        {"ticker": "AAA", "score": 1.0, "signal_strength": 2, "signal": False},
        {"ticker": "OLD", "score": 1.0, "signal_strength": 5},
        {"ticker": "BBB", "score": 9.0, "message": "BBB breakout", "extra": [1]},
        {"ticker": "AAA"},
        {"ticker": "BBB", "date": "2024-03-07", "score": 100.0},
    ]
    result = run_screening(instances, DF, limit=10, universe=UNIVERSE)
    json.dumps(result, allow_nan=False)
    ranked = result["ranked_results"]
    assert [(r["ticker"], r["score"]) for r in ranked] == [
        ("BBB", 9.0), ("OLD", 1.0), ("AAA", 1.0), ("BBB", 1.0), ("AAA", 1.0), ("AAA", None),
    ]  # fmt: skip
    assert ranked[4]["signal"] is False
    assert ranked[0]["message"] == "BBB breakout" and ranked[0]["extra"] == [1]
    assert ranked[5]["message"] == "AAA signal on 2024-03-08"
    assert ranked[1]["message"] == "OLD signal on 2024-03-08 (score 1)"
    assert result["as_of"] == "2024-03-08"
    assert result["universe_size"] == 4 and result["results_returned"] == 6
    assert result["missing_symbols"] == ["GONE"] and result["stale_symbols"] == ["OLD"]
    assert result["total_instances"] == 7 and result["instances_not_on_as_of"] == 1


def test_limit_and_explicit_as_of() -> None:
    instances = [
        {"ticker": "AAA", "date": "2024-03-06", "score": 1},
        {"ticker": "BBB", "date": pd.Timestamp("2024-03-06"), "score": 2},
        {"ticker": "OLD", "date": "2024-03-06T00:00:00Z", "score": 3},
    ]
    result = run_screening(instances, DF, limit=2, universe=UNIVERSE, as_of=dt.date(2024, 3, 6))
    assert [r["ticker"] for r in result["ranked_results"]] == ["OLD", "BBB"]
    assert result["stale_symbols"] == [] and result["as_of"] == "2024-03-06"


def test_tickers_outside_the_universe_are_ignored_and_counted() -> None:
    result = run_screening([{"ticker": "ZZZ"}], DF, limit=5, universe=UNIVERSE)
    assert result["ranked_results"] == [] and result["unknown_ticker_instances"] == 1
    assert any("outside the universe" in w for w in result["warnings"])


def test_empty_instances_and_zero_limit() -> None:
    result = run_screening([], DF, limit=0, universe=UNIVERSE)
    assert result["ranked_results"] == [] and result["results_returned"] == 0


@pytest.mark.parametrize("limit", [-1, 1.5, True])
def test_bad_limit(limit: object) -> None:
    with pytest.raises(TaskValidationError, match="limit="):
        run_screening([], DF, limit=limit, universe=UNIVERSE)  # type: ignore[arg-type]


def test_bad_instance_is_an_error() -> None:
    with pytest.raises(EngineError, match="instance 0 has no 'ticker'"):
        run_screening([{"score": 1}], DF, limit=5, universe=UNIVERSE)


def test_as_of_on_a_weekend_snaps_to_the_last_session_before_it() -> None:
    # 2024-03-09 is a Saturday; the universe's last session on or before it is Friday 03-08.
    instances = [
        {"ticker": "AAA", "date": "2024-03-08", "score": 2.0},
        {"ticker": "BBB", "score": 1.0},
    ]
    result = run_screening(instances, DF, limit=5, universe=UNIVERSE, as_of=dt.date(2024, 3, 9))
    assert result["as_of"] == "2024-03-08"
    assert result["as_of_requested"] == "2024-03-09"
    assert [r["ticker"] for r in result["ranked_results"]] == ["AAA", "BBB"]
    assert result["ranked_results"][1]["date"] == "2024-03-08"
    # Only OLD (last session 03-06) is stale, not every symbol.
    assert result["stale_symbols"] == ["OLD"]
