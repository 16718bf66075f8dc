"""The CLI's sweep heatmap at any grid size, in colour, and its result labels."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from strategyq.cli.sweep_view import render_heatmap, render_sweep


def _heat(nx: int, ny: int) -> dict[str, Any]:
    return {
        "metric": "total_return",
        "x": "fast",
        "y": "slow",
        "x_values": list(range(1, nx + 1)),
        "y_values": list(range(100, 100 + ny)),
        "values": [
            [None if (i + j) % 7 == 0 else (i - j) / 100 for j in range(nx)] for i in range(ny)
        ],
    }


def _console(width: int) -> Console:
    return Console(record=True, width=width, color_system="truecolor", force_terminal=True)


def test_a_small_heatmap_is_a_coloured_table_of_percentages() -> None:
    console = _console(200)
    render_heatmap(console, _heat(4, 3), "sw-1")
    text = console.export_text(clear=False)
    assert "Total return: slow (rows) × fast (columns)" in text
    assert "-1.00%" in text and "2.00%" in text  # values as percentages
    styled = console.export_text(styles=True)
    assert "48;2;" in styled  # 24-bit background colours
    assert "colour scale: red -3.00 % → green 2.00 %" in text


def test_a_40_by_25_heatmap_is_a_block_grid_with_its_axes() -> None:
    console = _console(120)
    render_heatmap(console, _heat(40, 25), "sw-2")
    text = console.export_text(clear=False)
    lines = [line for line in text.splitlines() if line.strip().startswith(("10", "11", "12"))]
    assert len(lines) == 25
    assert "fast: 1 … 40 (40 values)" in text
    styled = console.export_text(styles=True)
    cell = "m  \x1b[0m"  # two coloured spaces
    rows = [line for line in styled.splitlines() if cell in line]
    assert len(rows) == 25
    # One coloured cell per combination (grey where the constraint left none).
    assert all(line.count(cell) == 40 for line in rows)


def test_a_grid_wider_than_the_terminal_points_to_the_dashboard() -> None:
    console = _console(120)
    render_heatmap(console, _heat(100, 100), "sw-3")
    text = console.export_text(clear=False)
    assert "100 × 100 heatmap is wider than this terminal" in text
    assert "/tasks/sw-3" in text and "strategyq result sw-3 --html report.html" in text


def test_the_sweep_summary_and_top_table_use_labels_and_units() -> None:
    console = _console(200)
    data = {
        "maximize": "sharpe_ratio",
        "params": ["fast", "slow"],
        "total_combinations": 2,
        "expanded_combinations": 2,
        "chunks": 1,
        "top": [
            {"rank": 1, "params": {"fast": 5, "slow": 50},
             "metrics": {"sharpe_ratio": 1.234, "total_return": 0.0865, "max_drawdown": -0.1,
                         "num_trades": 12, "win_rate": 0.5}},
        ],
        "heatmap": _heat(2, 1),
    }  # fmt: skip
    render_sweep(console, data, "sw-4")
    text = console.export_text(clear=False)
    assert "ranked by Sharpe ratio" in text
    for shown in ("1.23", "8.65 %", "-10.00 %", "12", "50.00 %", "Max drawdown", "Win rate"):
        assert shown in text
