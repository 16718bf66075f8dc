"""Memory per million rows for 1 y and 20 y slices of one 20-year store, two ways of reading.

"whole" decodes every requested ticker's whole stored history at once and lets the
loader slice the dates (the yardstick); "windowed" is ``Store.read`` with
the window the loader asks for. Both run in the same session, alternating, each load in
a fresh interpreter. Cold = the first load of the process (imports done, OS page cache
warm); warm = a second load in the same process with the frame cache off, its peak
measured after resetting the peak-RSS counter. Peak memory is the rise of RSS above
the level before the load.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

from rich.table import Table

from strategyq.data import write_synthetic

SYMBOLS = int(os.environ.get("STRATEGYQ_BENCH_MEMORY_SYMBOLS", "300"))
YEARS = 20.0

_CHILD = r"""
import gc, json, os, sys, time
from datetime import date
import numpy as np
import pyarrow.parquet as pq
from strategyq.data import MarketData
from strategyq.data import store as store_module
from strategyq.data.bars import Bars
from strategyq.data.schema import VALUE_COLUMNS

root, mode, first = sys.argv[1], sys.argv[2], sys.argv[3]
last = sys.argv[4]

def whole_history(self, name, tickers, manifest, window):
    # The reading path without a window: all row groups of the tickers at once.
    parquet = pq.ParquetFile(self.root / name)
    md = parquet.metadata
    group_rows = np.array([md.row_group(i).num_rows for i in range(md.num_row_groups)])
    group_start = np.concatenate([[0], np.cumsum(group_rows)])
    entries = sorted((manifest.tickers[t] for t in tickers), key=lambda e: e.offset)
    names = sorted(tickers, key=lambda t: manifest.tickers[t].offset)
    wanted = set()
    for e in entries:
        a = int(np.searchsorted(group_start, e.offset, side="right")) - 1
        b = int(np.searchsorted(group_start, e.offset + e.rows - 1, side="right")) - 1
        wanted.update(range(a, b + 1))
    groups = sorted(wanted)
    table = parquet.read_row_groups(groups, columns=["date", *VALUE_COLUMNS], use_threads=True)
    read_start = {g: int(s) for g, s in zip(groups, np.cumsum([0, *group_rows[groups]]))}
    index = np.concatenate([
        np.arange(read_start[g] + e.offset - int(group_start[g]),
                  read_start[g] + e.offset - int(group_start[g]) + e.rows)
        for e in entries
        for g in [int(np.searchsorted(group_start, e.offset, side="right")) - 1]
    ])
    cols = {c: store_module._column(table, c)[index] for c in ["date", *VALUE_COLUMNS]}
    return Bars(tickers=names, lengths=np.array([e.rows for e in entries], dtype=np.int64),
                dates=cols["date"].astype(np.int32), values={c: cols[c] for c in VALUE_COLUMNS})

if mode == "whole":
    store_module.Store._read_file = whole_history

def rss(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) / 1024

def reset_peak():
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")

market = MarketData(root, cache_mb=0)
symbols = market.tickers()
out = {}
for phase in ("cold", "warm"):
    gc.collect()
    reset_peak()
    before = rss("VmRSS")
    t = time.perf_counter()
    frame = market.load(symbols, date.fromisoformat(first), date.fromisoformat(last)).frame
    elapsed = time.perf_counter() - t
    out[phase] = {"s": elapsed, "peak_mib": rss("VmHWM") - before, "rows": len(frame)}
    del frame
print(json.dumps(out))
"""


def _run(root: Path, mode: str, first: str, last: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(root), mode, first, last],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def main() -> dict[str, Any]:
    results: dict[str, Any] = {"cores": os.cpu_count(), "symbols": SYMBOLS, "rows": []}
    with tempfile.TemporaryDirectory(prefix="strategyq-bench-memory-") as tmp:
        root = Path(tmp) / "store"
        summary = write_synthetic(root, SYMBOLS, YEARS, seed=1)
        last = summary.last
        slices = {
            "1 y": (last - timedelta(days=365), last),
            "20 y": (summary.first, last),
        }
        for name, (first, end) in slices.items():
            runs: dict[str, list[dict[str, Any]]] = {"whole": [], "windowed": []}
            for _ in range(3):  # alternate, so both see the same machine load
                for mode in ("whole", "windowed"):
                    runs[mode].append(_run(root, mode, first.isoformat(), end.isoformat()))
            for mode, samples in runs.items():
                row: dict[str, Any] = {"slice": name, "mode": mode, "load": os.getloadavg()[0]}
                for phase in ("cold", "warm"):
                    picked = sorted(samples, key=lambda r: r[phase]["peak_mib"])[1]
                    mrows = picked[phase]["rows"] / 1e6
                    row[f"{phase}_mib_per_mrow"] = picked[phase]["peak_mib"] / mrows
                    row[f"{phase}_ms"] = sorted(r[phase]["s"] for r in samples)[1] * 1000
                    row["frame_rows"] = picked[phase]["rows"]
                results["rows"].append(row)
    _print(results)
    return results


def _print(results: dict[str, Any]) -> None:
    table = Table(
        title=(
            f"peak memory per million frame rows, {results['symbols']} symbols x 20 y store "
            f"({results['cores']} cores); median of 3, modes alternated"
        )
    )
    for column in (
        "slice",
        "read",
        "frame rows",
        "cold MiB/M rows",
        "warm MiB/M rows",
        "cold ms",
        "warm ms",
        "windowed / whole (cold mem)",
        "load avg",
    ):
        table.add_column(column, justify="left" if column in {"slice", "read"} else "right")
    whole = {r["slice"]: r for r in results["rows"] if r["mode"] == "whole"}
    for r in results["rows"]:
        ratio = r["cold_mib_per_mrow"] / whole[r["slice"]]["cold_mib_per_mrow"]
        table.add_row(
            r["slice"], r["mode"], f"{r['frame_rows']:,}",
            f"{r['cold_mib_per_mrow']:.0f}", f"{r['warm_mib_per_mrow']:.0f}",
            f"{r['cold_ms']:.0f}", f"{r['warm_ms']:.0f}",
            f"{ratio:.2f}x", f"{r['load']:.2f}",
        )  # fmt: skip
