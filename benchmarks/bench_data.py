"""Market data: synth speed, cold load (fresh process) and cached load, peak memory."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from strategyq.data import MarketData, write_synthetic

# Runs in a fresh interpreter: imports first (not timed), then one timed load, then peak RSS.
_COLD = """
import json, resource, sys, time
from strategyq.data import MarketData
market = MarketData(sys.argv[1])
symbols = market.tickers()
t = time.perf_counter()
frame = market.load(symbols, None, None).frame
elapsed = time.perf_counter() - t
print(json.dumps({"s": elapsed, "rows": len(frame),
                  "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

CASES = (
    # (name, symbols, years, cold target s, cached target s, rss target MiB)
    ("100 sym x 2 y", 100, 2.0, 0.060, 0.005, None),
    ("1000 sym x 10 y", 1000, 10.0, 2.5, None, 2.5 * 1024),
)


def _cold(root: Path, repeats: int) -> dict[str, float]:
    runs = []
    for _ in range(repeats):
        proc = subprocess.run(
            [sys.executable, "-c", _COLD, str(root)], capture_output=True, text=True, check=True
        )
        runs.append(json.loads(proc.stdout))
    times = [r["s"] for r in runs]
    return {
        "median_s": statistics.median(times),
        "min_s": min(times),
        "rows": runs[0]["rows"],
        "rss_mib": max(r["rss_mib"] for r in runs),
    }


def _cached(root: Path) -> float:
    market = MarketData(root)
    symbols = market.tickers()
    market.load(symbols, None, None)
    times = []
    for _ in range(50):
        t = time.perf_counter()
        market.load(symbols, None, None)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> dict[str, Any]:
    results: dict[str, Any] = {"cores": os.cpu_count(), "cases": []}
    with tempfile.TemporaryDirectory(prefix="strategyq-bench-data-") as tmp:
        for name, symbols, years, cold_target, cached_target, rss_target in CASES:
            root = Path(tmp) / name.replace(" ", "")
            t = time.perf_counter()
            summary = write_synthetic(root, symbols, years, seed=1)
            synth_s = time.perf_counter() - t
            cold = _cold(root, repeats=9 if symbols <= 100 else 3)
            cached = _cached(root) if cached_target is not None else None
            results["cases"].append(
                {
                    "case": name, "rows": summary.rows, "synth_s": synth_s,
                    "cold_median_s": cold["median_s"], "cold_min_s": cold["min_s"],
                    "cold_target_s": cold_target, "cached_s": cached,
                    "cached_target_s": cached_target, "peak_rss_mib": cold["rss_mib"],
                    "rss_target_mib": rss_target,
                }
            )  # fmt: skip
    _print(results)
    return results


def _cell(value: float | None, target: float | None, scale: float, fmt: str) -> str:
    if value is None:
        return "-"
    text = format(value * scale, fmt)
    if target is None:
        return text
    mark = "[green]ok[/]" if value <= target else "[red]MISSED[/]"
    return f"{text} / {format(target * scale, fmt)} {mark}"


def _print(results: dict[str, Any]) -> None:
    table = Table(title=f"market data ({results['cores']} cores); value / target")
    for column in (
        "case",
        "rows",
        "synth s",
        "cold ms (median)",
        "cold min",
        "cached ms",
        "RSS MiB",
    ):
        table.add_column(column, justify="left" if column == "case" else "right")
    for c in results["cases"]:
        table.add_row(
            c["case"], f"{c['rows']:,}", f"{c['synth_s']:.2f}",
            _cell(c["cold_median_s"], c["cold_target_s"], 1000, ".0f"),
            f"{c['cold_min_s'] * 1000:.0f}",
            _cell(c["cached_s"], c["cached_target_s"], 1000, ".3f"),
            _cell(c["peak_rss_mib"], c["rss_target_mib"], 1, ".0f"),
        )  # fmt: skip
    Console().print(table)


if __name__ == "__main__":
    main()
