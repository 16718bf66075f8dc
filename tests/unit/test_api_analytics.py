"""The backtest page's curve views: monthly returns, rolling figures, the benchmark's cards."""

from __future__ import annotations

import math

import pytest

from strategyq.api import analytics


def _data(dates: list[str], values: list[float], **extra: object) -> dict[str, object]:
    return {"equity_curve": {"dates": dates, "values": values}, **extra}


def test_each_month_is_its_last_equity_over_the_month_befores() -> None:
    dates = ["2020-01-02", "2020-01-31", "2020-02-28", "2020-04-01", "2022-01-03"]
    values = [100.0, 110.0, 99.0, 108.9, 217.8]
    months = analytics.monthly_returns(_data(dates, values))
    assert months is not None
    assert months["years"] == [2020, 2021, 2022]
    jan, feb, mar, apr = months["values"][0][:4]
    assert jan == pytest.approx(0.10) and feb == pytest.approx(-0.10)
    assert mar is None and apr == pytest.approx(0.10)
    # A year with no session has no figures; the next compares with the last month seen.
    assert months["values"][1] == [None] * 12 and months["yearly"][1] is None
    assert months["values"][2][0] == pytest.approx(1.0)
    assert months["yearly"][0] == pytest.approx(0.089) and months["yearly"][2] == pytest.approx(1.0)
    figure = analytics.monthly_figure(months)
    assert figure["data"][0]["y"][0] == "2020 (+8.9 %)"
    assert figure["data"][0]["z"][0][0] == pytest.approx(10.0)


def test_no_curve_or_a_one_point_curve_has_no_views() -> None:
    assert analytics.monthly_returns({}) is None
    assert analytics.monthly_returns(_data(["2020-01-02"], [100.0])) is None
    assert analytics.rolling(_data(["2020-01-02", "2020-01-03"], [1.0, 2.0])) is None
    assert analytics.monthly_returns(_data(["2020-01-02", "x"], [1.0])) is None
    # A stored record of any shape: a date that is not a date means no view, not an error.
    odd = ["2020-01-02", "<!--<script>", "2020-13-01"]
    assert analytics.monthly_returns(_data(odd, [1.0, 2.0, 3.0])) is None
    assert analytics.rolling(_data(odd, [1.0, 2.0, 3.0]), window=1) is None
    bench = {"benchmark_curve": {"dates": ["2020-01-01", "2020-02-31"], "values": [1.0, 2.0]}}
    assert analytics.benchmark_figures(bench) == {}


def test_rolling_figures_start_at_the_first_full_window_and_skip_a_flat_one() -> None:
    dates = [f"2020-{1 + i // 28:02d}-{1 + i % 28:02d}" for i in range(70)]
    values = [100.0] * 66 + [101.0, 99.0, 102.0, 100.0]
    roll = analytics.rolling(_data(dates, values), window=63)
    assert roll is not None
    assert roll["dates"] == dates[63:] and len(roll["sharpe"]) == 7
    # Flat returns have no Sharpe ratio and no volatility.
    assert roll["sharpe"][0] is None and roll["volatility"][0] == 0.0
    assert roll["volatility"][-1] > 0 and roll["sharpe"][-1] is not None


def test_the_benchmarks_figures_come_from_its_curve_and_its_return() -> None:
    dates = ["2020-01-01", "2020-07-01", "2021-01-01"]
    data = _data(
        dates,
        [100.0, 100.0, 100.0],
        performance_metrics={"benchmark_return": 0.21},
        benchmark_curve={"dates": dates, "values": [100.0, 90.0, 121.0]},
    )
    figures = analytics.benchmark_figures(data)
    assert figures["total_return"] == 0.21
    assert figures["max_drawdown"] == pytest.approx(-0.10)
    years = 366 / 365.25
    assert figures["cagr"] == pytest.approx(1.21 ** (1 / years) - 1)
    daily = [-0.1, 121 / 90 - 1]
    mean = sum(daily) / 2
    spread = math.sqrt(sum((d - mean) ** 2 for d in daily))
    assert figures["sharpe_ratio"] == pytest.approx(mean / spread * math.sqrt(252))
    # Without a benchmark curve only the return is known (the equal-weight universe's).
    assert analytics.benchmark_figures({"performance_metrics": {"benchmark_return": 0.5}}) == {
        "total_return": 0.5
    }
