"""The test suite's own time: ``make test`` on a clean clone, beside yardsticks of the same run.

``python -m benchmarks suite`` (``STRATEGYQ_BENCH_SUITE_REVS``, comma-separated revisions
of this repository, default ``HEAD``; ``STRATEGYQ_BENCH_SUITE_ROUNDS``, default 1).

For each round, each revision in turn (reversed every other round, so two revisions
alternate A B B A): ``git clone`` of this repository's committed history into a new
directory others can enter (the sandbox's children read the checkout under uids of their
own), the revision checked out, ``make install`` (its own venv, not timed), then
``make test`` as a newcomer runs it. Uncommitted changes are not measured. The clone is
removed after its run; its ``install.log`` and ``test.log`` stay in the directory above
it, which the table's JSON names.

Beside each run, measured just before it on the same machine:

- five ``python -c "import pandas"`` in the clone's venv, their CPU (the unit a suite
  made of Python processes that import pandas pays again and again);
- the host's contention: a pure-Python loop alone, then two copies side by side; the
  mean CPU of a copy in the pair over the loop's alone. Near 1.0 the two cores are two;
  at 1.5 each copy ran half as fast again, and so would the suite's processes;
- the load average.

Wall time is ``make test``'s from start to exit; CPU is the whole machine's busy time
from ``/proc/stat`` (user, nice, system) over the run, every process included.
"""

from __future__ import annotations

import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
REVS = [r for r in os.environ.get("STRATEGYQ_BENCH_SUITE_REVS", "HEAD").split(",") if r]
ROUNDS = int(os.environ.get("STRATEGYQ_BENCH_SUITE_ROUNDS", "1"))
TARGET_S = 180.0
"""``make test`` on the 2-core development machine (docs/testing.md)."""

_TICKS = os.sysconf("SC_CLK_TCK")
_SPIN = "import time\nt = time.process_time()\nx = 0\nfor i in range(20_000_000): x += i\n"
_SPIN += "print(time.process_time() - t)"
_SUMMARY = re.compile(r"(?:(\d+) failed, )?(\d+) passed.* in ([\d.]+)s")


def busy_seconds() -> float:
    """The machine's user + nice + system time so far, in seconds (``/proc/stat``)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    return (int(fields[1]) + int(fields[2]) + int(fields[3])) / _TICKS


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def pandas_yardstick(python: Path) -> float:
    """CPU seconds of five ``python -c "import pandas"`` in ``python``'s environment."""
    before = children_cpu()
    for _ in range(5):
        subprocess.run([str(python), "-c", "import pandas"], check=True)
    return children_cpu() - before


def contention() -> float:
    """The CPU of a pure-Python loop run beside a copy of itself, over its CPU alone."""
    alone = float(subprocess.check_output([sys.executable, "-c", _SPIN]))
    pair = [
        subprocess.Popen([sys.executable, "-c", _SPIN], stdout=subprocess.PIPE) for _ in range(2)
    ]
    beside = [float(p.communicate()[0]) for p in pair]
    return sum(beside) / 2 / alone


def clean_clone(rev: str) -> Path:
    """A clone of this repository at ``rev`` with its own venv, in a directory all can enter."""
    parent = Path(tempfile.mkdtemp(prefix="strategyq-suite-"))
    parent.chmod(0o755)
    checkout = parent / "strategyq"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(checkout)], check=True)
    subprocess.run(["git", "-C", str(checkout), "checkout", "--quiet", rev], check=True)
    with (parent / "install.log").open("w") as log:
        subprocess.run(
            ["make", "install", f"PYTHON={sys.executable}"],
            cwd=checkout,
            stdout=log,
            stderr=subprocess.STDOUT,
            check=True,
        )
    return checkout


def run_suite(rev: str) -> dict[str, Any]:
    checkout = clean_clone(rev)
    commit = subprocess.check_output(
        ["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"], text=True
    ).strip()
    yardstick = pandas_yardstick(checkout / ".venv" / "bin" / "python")
    crowding = contention()
    load = os.getloadavg()[0]
    log_path = checkout.parent / "test.log"
    busy = busy_seconds()
    started = time.perf_counter()
    with log_path.open("w") as log:
        code = subprocess.run(
            ["make", "test"], cwd=checkout, stdout=log, stderr=subprocess.STDOUT
        ).returncode
    wall = time.perf_counter() - started
    cpu = busy_seconds() - busy
    found = _SUMMARY.findall(log_path.read_text())
    # About 2 GB with its venv: only the logs beside it are kept.
    shutil.rmtree(checkout, ignore_errors=True)
    failed, passed, _ = found[-1] if found else ("", "0", "0")
    return {
        "rev": rev,
        "commit": commit,
        "exit": code,
        "passed": int(passed),
        "failed": int(failed or 0),
        "wall_s": round(wall, 1),
        "busy_cpu_s": round(cpu, 1),
        "yardstick_cpu_s": round(yardstick, 2),
        "contention": round(crowding, 2),
        "load": round(load, 2),
        "log": str(log_path),
    }


def table_of(runs: list[dict[str, Any]]) -> Table:
    """The runs beside their yardsticks; the first run's revision is the baseline."""
    baseline = runs[0]
    table = Table(title="make test on a clean clone, beside the yardsticks of the same run")
    for column in (
        "revision", "tests", "wall", "machine CPU", "5 × import pandas", "wall / yardstick",
        f"wall / {baseline['commit']}'s mean", "contention", "load", f"≤ {TARGET_S:.0f} s",
    ):  # fmt: skip
        table.add_column(column, justify="left" if column == "revision" else "right")
    same = [r["wall_s"] for r in runs if r["rev"] == baseline["rev"]]
    baseline_wall = sum(same) / len(same)
    for run in runs:
        tests = f"{run['passed']:,} passed" + (f", {run['failed']} failed" if run["failed"] else "")
        table.add_row(
            f"{run['rev']} ({run['commit']})",
            tests if run["exit"] == 0 else f"{tests} (exit {run['exit']})",
            f"{run['wall_s']:.1f} s",
            f"{run['busy_cpu_s']:.0f} CPU-s",
            f"{run['yardstick_cpu_s']:.2f} CPU-s",
            f"{run['wall_s'] / run['yardstick_cpu_s']:.0f} ×",
            f"{run['wall_s'] / baseline_wall:.2f} ×",
            f"{run['contention']:.2f} ×",
            f"{run['load']:.2f}",
            "yes" if run["exit"] == 0 and run["wall_s"] <= TARGET_S else "no",
        )
    return table


def main() -> dict[str, Any]:
    console = Console(width=max(Console().width, 150))
    console.print(
        f"[bold]make test[/] on clean clones of {', '.join(REVS)}, {ROUNDS} round(s), "
        f"{os.cpu_count()} cores"
    )
    runs: list[dict[str, Any]] = []
    for round_ in range(ROUNDS):
        for rev in REVS if round_ % 2 == 0 else list(reversed(REVS)):
            run = run_suite(rev)
            console.print(run)
            runs.append(run)
    console.print(table_of(runs))
    return {"target_s": TARGET_S, "runs": runs}
