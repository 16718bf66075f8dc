"""Run the benchmarks: ``python -m benchmarks [data|engine|sandbox …]``.

Each area is a module ``benchmarks/bench_<area>.py`` with a ``main()`` that
prints its table (rich) and returns a JSON-able dict; the dicts are written to
``benchmarks/results/<area>.json``.
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import sys
from pathlib import Path

from rich.console import Console


def main(argv: list[str]) -> int:
    here = Path(__file__).parent
    areas = sorted(
        m.name.removeprefix("bench_")
        for m in pkgutil.iter_modules([str(here)])
        if m.name.startswith("bench_")
    )
    slow = {
        "e2e", "soak", "sweep", "postgres", "memory", "grid", "peers", "task_cpu", "vectorbt",
        "columns", "suite",
    }  # fmt: skip
    chosen = argv or [a for a in areas if a not in slow]
    unknown = [a for a in chosen if a not in areas]
    if unknown:
        print(f"unknown benchmark area(s): {', '.join(unknown)}; choose from {', '.join(areas)}")
        return 2
    console = Console()
    console.print(
        f"[bold]strategyq benchmarks[/] — {os.cpu_count()} cores, Python {sys.version.split()[0]}"
    )
    out_dir = here / "results"
    out_dir.mkdir(exist_ok=True)
    for area in chosen:
        module = importlib.import_module(f"benchmarks.bench_{area}")
        result = module.main()
        (out_dir / f"{area}.json").write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
