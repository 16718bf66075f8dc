"""Every metric has a label, a unit and the docs' definition; values read for people."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from strategyq.engine import METRIC_NAMES
from strategyq.labels import METRICS, date_range, duration, format_metric, label

DOC = (Path(__file__).resolve().parents[2] / "docs" / "engine.md").read_text()


def _doc_definitions() -> dict[str, str]:
    table = DOC.split("## Performance metrics", 1)[1].split("## Result shape", 1)[0]
    out = {}
    for line in table.splitlines():
        if line.startswith("| `"):
            names, text = (c.strip() for c in line.strip("|").split("|")[:2])
            for name in names.split(","):
                out[name.strip().strip("`")] = text.replace("**", "")
    return out


def test_every_metric_has_a_label_unit_and_the_docs_definition() -> None:
    assert set(METRICS) == set(METRIC_NAMES)
    docs = _doc_definitions()
    for name, metric in METRICS.items():
        assert metric.label and metric.label != name
        if "[Benchmark]" in docs[name]:
            # The docs point to their Benchmark section; the hover text says it in place.
            assert "benchmark" in metric.definition.lower()
        else:
            assert metric.definition == docs[name], name


@pytest.mark.parametrize(
    ("name", "value", "shown"),
    [
        ("total_return", 0.0865, "8.65 %"),
        ("max_drawdown", -0.25, "-25.00 %"),
        ("benchmark_return", 6.4201, "642.01 %"),
        ("sharpe_ratio", 1.234, "1.23"),
        ("num_trades", 1204, "1,204"),
        ("expectancy", 455.2952, "455.30"),
        ("avg_holding_sessions", 3.25, "3.2 sessions"),
        ("win_rate", None, "—"),
        ("sharpe_ratio", float("nan"), "—"),
        ("unknown_metric", 0.5, "0.50"),
    ],
)
def test_metrics_read_in_their_units(name: str, value: float | None, shown: str) -> None:
    assert format_metric(name, value) == shown


def test_durations_and_date_ranges_read_for_people() -> None:
    assert duration(850) == "850 ms"
    assert duration(24032.5) == "24.0 s"
    assert duration(192_000) == "3 min 12 s"
    assert duration(7_500_000) == "2 h 05 min"
    assert duration("x") == "—"
    assert date_range(["2010-01-04T00:00:00", "2012-12-31T00:00:00"]) == (
        "2010-01-04 → 2012-12-31 (3.0 years)"
    )
    assert date_range(["2024-01-02T00:00:00Z", "2024-03-01T00:00:00Z"]).endswith("(59 days)")
    assert date_range("odd") == "odd"
    assert label("sharpe_ratio") == "Sharpe ratio" and label("new_thing") == "New thing"
    assert not re.search(r"_", "".join(m.label for m in METRICS.values()))
