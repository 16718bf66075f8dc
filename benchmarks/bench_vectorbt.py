"""Sweeps and a large backtest through the queue, beside vectorbt on the same jobs, same run.

``python -m benchmarks vectorbt`` (also part of ``make bench-peers``). A private
embedded Valkey, the sample data (AAPL 2000–2013) and synthetic stores in a
temporary ``STRATEGYQ_HOME``; every strategyq figure is submit-to-result through
a real worker (sandbox children included), with a whole-grid strategy
``f(df, grid)``; vectorbt runs in a process of its own, warm (numba compiled,
bars in memory), so its peak memory is its own.

1. The 10 × 10 SMA-crossover grid on AAPL: strategyq warm (1 worker, 2 executors)
   against vectorbt warm, rounds interleaved; backtesting.py's ``optimize`` runs the
   same grid once after the rounds.
2. 1,000 combinations (fast × slow × stop loss) on 100 symbols × 2 years, one slot
   (``max_positions`` 1): time and peak memory against vectorbt with one cash pool
   per combination (all cash in one position at a time) and the same stops.
3. A large backtest, SMA 10/50 cross on ``STRATEGYQ_BENCH_SCALE_SYMBOLS`` (5,000)
   symbols × ``STRATEGYQ_BENCH_SCALE_YEARS`` (20) years, default settings: warm
   time and peak memory against vectorbt's; and memory per million frame rows,
   cold (a fresh worker) and warm, for the 1 y and whole slices of the same store,
   with the peak split by process.

Peak memory of strategyq is its footprint: the proportional set size (PSS) of the
worker and every process below it, private and file-backed pages, plus the sealed
memfds the sandbox host holds (its frames, mapped by the children; counted once,
whether mapped or not).

``STRATEGYQ_BENCH_VBT_PARTS`` picks the parts by name (``aapl``, ``big``, ``scale``,
comma-separated; all three by default): ``STRATEGYQ_BENCH_VBT_PARTS=aapl`` runs the
10 × 10 grid alone, in well under a minute.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pandas as pd
import redis
from rich.console import Console
from rich.table import Table

from benchmarks.bench_e2e import descendants
from benchmarks.bench_sweep import (
    CROSS,
    FAST,
    SLOW,
    aapl_frame,
    backtesting_py,
    vectorbt_time,
    wait_workers,
    workers,
)
from strategyq import add_backtest_task, add_sweep_task, wait_for_result
from strategyq.data import MarketData, load_sample, write_synthetic
from strategyq.embedded_valkey import EmbeddedServer

SCALE_SYMBOLS = int(os.environ.get("STRATEGYQ_BENCH_SCALE_SYMBOLS", "5000"))
SCALE_YEARS = float(os.environ.get("STRATEGYQ_BENCH_SCALE_YEARS", "20"))
# The strategy's memory limit and answer cap for the large backtest (0: the defaults,
# STRATEGYQ_MEMORY_MB and STRATEGYQ_ANSWER_MAX_BYTES): at 25 M rows the SMA strategy's
# own arrays outgrow the default 2 GiB, and its 675,000 signal rows the 32 MiB answer.
SCALE_MEMORY_MB = int(os.environ.get("STRATEGYQ_BENCH_SCALE_MEMORY_MB", "8192"))
SCALE_ANSWER_BYTES = int(os.environ.get("STRATEGYQ_BENCH_SCALE_ANSWER_BYTES", str(128 << 20)))
ROUNDS = int(os.environ.get("STRATEGYQ_BENCH_VBT_ROUNDS", "3"))
PARTS = frozenset(
    part.strip()
    for part in os.environ.get("STRATEGYQ_BENCH_VBT_PARTS", "aapl,big,scale").split(",")
    if part.strip()
)

GRID = """
def sma_cross_grid(df, grid):
    # CROSS for a whole chunk of the grid in one call: each window's mean once, each
    # (fast, slow) pair's signals once, shared by the combinations that differ only
    # in a trade-model parameter (a stop loss).
    tickers = df["ticker"].to_numpy()
    n = len(tickers)
    first = np.ones(n, dtype=bool)
    first[1:] = tickers[1:] != tickers[:-1]
    rows = np.arange(n)
    pos = rows - np.maximum.accumulate(np.where(first, rows, 0))
    close = df["close"]
    means = {int(w): close.rolling(int(w)).mean().to_numpy()
             for w in set(grid["fast"]) | set(grid["slow"])}
    pairs = {}
    for i, (f, s) in enumerate(zip(grid["fast"], grid["slow"])):
        pairs.setdefault((int(f), int(s)), []).append(i)
    index, entry, exit_, combo = [], [], [], []
    for (f, s), members in pairs.items():
        above = means[f] > means[s]
        before = np.concatenate([[False], above[:-1]])
        ready = pos >= s
        up = ready & above & ~before
        down = ready & ~above & before
        picked = np.flatnonzero(up | down)
        for i in members:
            index.append(picked)
            entry.append(up[picked])
            exit_.append(down[picked])
            combo.append(np.full(len(picked), i))
    index = np.concatenate(index)
    out = df[["ticker", "date"]].take(index).reset_index(drop=True)
    out["entry"] = np.concatenate(entry)
    out["exit"] = np.concatenate(exit_)
    out["combination"] = np.concatenate(combo)
    return out
"""

BIG = {
    "fast": [5, 10, 15, 20, 25, 30, 35, 40, 45, 50],
    "slow": [60, 80, 100, 120, 140, 160, 180, 200, 220, 240],
    "stop_loss_pct": [2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 12.0],
}

_VBT_CHILD = r"""
import json, sys, time
import numpy as np, pandas as pd, vectorbt as vbt
from strategyq.data import MarketData

def rss(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) / 1024

job, root, start, end = sys.argv[1], sys.argv[2], sys.argv[4], sys.argv[5]
symbols = json.loads(sys.argv[3])
base = rss("VmRSS")
frame = MarketData(root, cache_mb=0).load(symbols, start, end, warmup_sessions=0,
                                          indicators=False).frame
wide = {c: frame.pivot(index="date", columns="ticker", values=c) for c in ("open", "close")}
del frame

def cross(close, fast, slow):
    f = vbt.MA.run(close, window=fast, short_name="fast").ma
    s = vbt.MA.run(close, window=slow, short_name="slow").ma
    return f, s

def big(close, open_):
    fast, slow, stops = json.loads(sys.argv[6])
    f = vbt.MA.run(close, window=fast).ma.to_numpy().reshape(len(close), len(fast), -1)
    s = vbt.MA.run(close, window=slow).ma.to_numpy().reshape(len(close), len(slow), -1)
    cols = []
    ent, ex = [], []
    for i, fw in enumerate(fast):
        for j, sw in enumerate(slow):
            above = f[:, i] > s[:, j]
            before = np.vstack([np.zeros((1, above.shape[1]), bool), above[:-1]])
            ready = ~np.isnan(s[:, j]) & ~np.isnan(np.vstack([s[:1, j] * np.nan, s[:-1, j]]))
            ent.append(ready & above & ~before)
            ex.append(ready & ~above & before)
    n_sym = close.shape[1]
    ent = np.concatenate(ent, axis=1)
    ex = np.concatenate(ex, axis=1)
    pairs = len(fast) * len(slow)
    group = np.repeat(np.arange(pairs), n_sym)
    cols = pd.RangeIndex(ent.shape[1])
    shift = lambda a: np.vstack([np.zeros((1, a.shape[1]), bool), a[:-1]])
    price = np.tile(open_.to_numpy(), (1, pairs))
    closes = pd.DataFrame(np.tile(close.to_numpy(), (1, pairs)), index=close.index, columns=cols)
    out = []
    # One stop at a time: the 100 (fast, slow) pairs x symbols as columns, one cash
    # pool per pair; all stops at once would hold ten times the columns.
    for stop in stops:
        pf = vbt.Portfolio.from_signals(
            closes, shift(ent), shift(ex), price=price, sl_stop=stop / 100.0,
            init_cash=100_000, group_by=group, cash_sharing=True, call_seq="auto", freq="1D")
        out.append(pf.sharpe_ratio())
    return out

def scale(close, open_):
    f, s = cross(close, 10, 50)
    above = (f.to_numpy() > s.to_numpy())
    before = np.vstack([np.zeros((1, above.shape[1]), bool), above[:-1]])
    ready = ~np.isnan(s.to_numpy())
    ent = ready & above & ~before
    ex = ready & ~above & before
    shift = lambda a: np.vstack([np.zeros((1, a.shape[1]), bool), a[:-1]])
    pf = vbt.Portfolio.from_signals(close, shift(ent), shift(ex), price=open_,
                                    init_cash=100_000, freq="1D")
    return pf.sharpe_ratio()

fn = big if job == "big" else scale
close, open_ = wide["close"], wide["open"]
fn(close.iloc[:300, :3], open_.iloc[:300, :3])  # numba compiles on the first call
times = []
for _ in range(2):
    t = time.perf_counter()
    fn(close, open_)
    times.append(time.perf_counter() - t)
print(json.dumps({"s": min(times), "peak_mib": rss("VmHWM"), "rise_mib": rss("VmHWM") - base}))
"""


def aapl_bars(data: Path) -> pd.DataFrame:
    """AAPL 2000–2013 from the store at ``data``, indexed by date, in vectorbt's column names."""
    frame = MarketData(data).load(
        ["AAPL"], "2000-01-01", "2013-12-31", warmup_sessions=0, indicators=False
    )
    return pd.DataFrame(frame.frame).set_index("date").rename(columns=str.capitalize)


def _vectorbt(job: str, root: Path, symbols: list[str], start: str, end: str) -> dict[str, Any]:
    extra = json.dumps([BIG["fast"], BIG["slow"], BIG["stop_loss_pct"]])
    proc = subprocess.run(
        [sys.executable, "-c", _VBT_CHILD, job, str(root), json.dumps(symbols), start, end, extra],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _role(pid: int, root: int) -> str:
    """Which process of a worker ``pid`` is (a sandbox child: forked by a fork server)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes()
        parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return "other"
    if b"strategyq.sandbox.zygote" in argv:
        try:
            forked = b"strategyq.sandbox.zygote" in Path(f"/proc/{parent}/cmdline").read_bytes()
        except OSError:
            forked = False
        return "sandbox child" if forked else "fork server"
    if b"strategyq.executor.sandbox_host" in argv:
        return "sandbox host"
    if b"strategyq.executor" in argv:
        return "executor"
    return "worker" if pid == root else "other"


def footprint(pid: int) -> dict[str, float]:
    """MiB held by a worker and every process below it, by process, and ``total``.

    Each process's proportional set size without its shared-memory pages (a page
    shared by several processes is split among them), plus the sealed memfds the
    processes hold open or mapped (the frames), each counted once at its size,
    under ``frames (memfd)``.
    """
    out: dict[str, float] = {}
    memfds: dict[int, float] = {}
    mapped_shmem = 0.0
    for p in descendants(pid):
        fields: dict[str, int] = {}
        with suppress(OSError):
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                key, _, rest = line.partition(":")
                value = rest.split()
                if value and value[0].isdigit():
                    fields[key] = int(value[0])
        if not fields:
            continue
        role = _role(p, pid)
        own = (fields.get("Pss", 0) - fields.get("Pss_Shmem", 0)) / 1024
        out[role] = out.get(role, 0.0) + own
        mapped_shmem += fields.get("Pss_Shmem", 0) / 1024
        with suppress(OSError):
            for fd in os.listdir(f"/proc/{p}/fd"):
                with suppress(OSError):
                    if os.readlink(f"/proc/{p}/fd/{fd}").startswith("/memfd:"):
                        st = os.stat(f"/proc/{p}/fd/{fd}")
                        memfds[st.st_ino] = st.st_blocks * 512 / 2**20
    # A frame a child still maps after its memfd was closed everywhere counts by its
    # mapped pages (never below what the open memfds hold).
    out["frames (memfd)"] = max(sum(memfds.values()), mapped_shmem)
    out["total"] = sum(out.values())
    return out


class PeakMemory:
    """The highest footprint of a worker and all its processes while the block runs,
    sampled every 0.1 s; ``at_peak`` splits that sample by process."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0.0, threading.Event()
        self.at_peak: dict[str, float] = {}

    @contextmanager
    def watch(self) -> Iterator[PeakMemory]:
        self._sample()
        thread = threading.Thread(target=self._run, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join()
            self._stop.clear()

    def _sample(self) -> None:
        now = footprint(self.pid)
        if now["total"] > self.peak:
            self.peak, self.at_peak = now["total"], now

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self._sample()


def _sweep(client: redis.Redis, symbols: list[str], start: str, end: str, grid: Any) -> float:
    task_id = f"vbt-{uuid.uuid4().hex[:8]}"
    t = time.perf_counter()
    add_sweep_task(
        client,
        task_id,
        GRID,
        symbols,
        start,
        end,
        grid,
        maximize="sharpe_ratio",
        hold_days=None,
        max_positions=1,
    )
    result = wait_for_result(client, task_id, timeout_s=1800)
    elapsed = time.perf_counter() - t
    if result is None or result["status"] != "completed":
        raise RuntimeError(f"sweep {task_id} did not complete: {result}")
    return elapsed


def _backtest(
    client: redis.Redis, symbols: list[str], start: str, end: str
) -> tuple[float, dict[str, Any]]:
    task_id = f"vbt-{uuid.uuid4().hex[:8]}"
    t = time.perf_counter()
    add_backtest_task(
        client,
        task_id,
        CROSS,
        symbols,
        start,
        end,
        params={"fast": 10, "slow": 50},
        hold_days=None,
        max_positions=10,
    )
    result = wait_for_result(client, task_id, timeout_s=1800)
    elapsed = time.perf_counter() - t
    if result is None or result["status"] != "completed":
        raise RuntimeError(f"backtest {task_id} did not complete: {result['data'].get('error')}")
    data: dict[str, Any] = result["data"]
    return elapsed, data


def main() -> dict[str, Any]:
    console = Console(width=150)
    out: dict[str, Any] = {"load": []}
    with tempfile.TemporaryDirectory(prefix="strategyq-bench-vbt-") as tmp:
        home = Path(tmp)
        data = home / "data"
        load_sample(data)
        if "big" in PARTS:
            write_synthetic(data, 100, 2, seed=3)
        server = EmbeddedServer(home / "valkey")
        url = server.ensure_running()
        client = redis.Redis.from_url(url, decode_responses=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "STRATEGYQ_"))}
        env.update(REDIS_URL=url, STRATEGYQ_HOME=str(home), STRATEGYQ_SCHEDULE_INTERVAL="0")
        aapl = aapl_bars(data)
        small = {"fast": FAST, "slow": SLOW}
        symbols = [f"SYN{i:04d}" for i in range(1, 101)]
        last = pd.Timestamp(MarketData(data).latest_session(symbols) or "2024-12-31")
        first = (last - pd.Timedelta(days=730)).date().isoformat()
        with workers(env, 1, 2) as pids:
            wait_workers(client, 1)
            if "aapl" in PARTS:
                _sweep(client, ["AAPL"], "2000-01-01", "2013-12-31", small)  # warm
                ours, theirs = [], []
                for _ in range(ROUNDS):
                    ours.append(_sweep(client, ["AAPL"], "2000-01-01", "2013-12-31", small))
                    theirs.append(vectorbt_time(aapl))
                    out["load"].append(os.getloadavg()[0])
                out["aapl"] = {
                    "strategyq_s": statistics.median(ours),
                    "vectorbt_s": statistics.median(theirs),
                    "strategyq_samples_s": ours,
                    "vectorbt_samples_s": theirs,
                    "load": os.getloadavg()[0],
                }
                # backtesting.py's optimize (its own process pool) once, with the worker idle.
                out["aapl"]["backtesting_py_s"] = backtesting_py(aapl_frame(home))[0]
                out["aapl"]["backtesting_py_load"] = os.getloadavg()[0]
                console.print(f"10 x 10 AAPL: {out['aapl']}")
            if "big" in PARTS:
                # Warm: 100 symbols.
                _sweep(client, symbols, first, last.date().isoformat(), small)
                with PeakMemory(pids[0]).watch() as peak:
                    big_s = _sweep(client, symbols, first, last.date().isoformat(), BIG)
                out["big"] = {
                    "strategyq_s": big_s,
                    "strategyq_peak_mib": peak.peak,
                    "load": os.getloadavg()[0],
                }
        if "big" in PARTS:
            vbt = _vectorbt("big", data, symbols, first, last.date().isoformat())
            out["big"].update(vectorbt_s=vbt["s"], vectorbt_peak_mib=vbt["peak_mib"])
            out["load"].append(os.getloadavg()[0])
            console.print(f"1,000 combinations: {out['big']}")
        if "scale" in PARTS:
            out["scale"] = _scale(home, env, client, console)
        server.stop()
    _print(console, out)
    return out


def _scale(
    home: Path, env: dict[str, str], client: redis.Redis, console: Console
) -> dict[str, Any]:
    root = home / "scale" / "data"
    console.print(f"writing {SCALE_SYMBOLS:,} synthetic symbols x {SCALE_YEARS:g} years …")
    summary = write_synthetic(root, SCALE_SYMBOLS, SCALE_YEARS, seed=5)
    # Default settings but the strategy's time limit (on a shared machine the whole
    # backtest can take longer than the default minute) and, where asked for, its memory.
    env = {**env, "STRATEGYQ_HOME": str(home / "scale"), "STRATEGYQ_TIME_LIMIT": "1200"}
    if SCALE_MEMORY_MB:
        env["STRATEGYQ_MEMORY_MB"] = str(SCALE_MEMORY_MB)
    if SCALE_ANSWER_BYTES:
        env["STRATEGYQ_ANSWER_MAX_BYTES"] = str(SCALE_ANSWER_BYTES)
    symbols = MarketData(root).tickers()
    end = summary.last.isoformat()
    slices = {
        "1 y": (summary.last - pd.Timedelta(days=365)).isoformat(),
        f"{SCALE_YEARS:g} y": summary.first.isoformat(),
    }
    rows: dict[str, Any] = {}
    for name, start in slices.items():
        with workers(env, 1, 1) as pids:
            wait_workers(client, 1)
            idle = footprint(pids[0])["total"]
            with PeakMemory(pids[0]).watch() as cold:
                cold_s, data = _backtest(client, symbols, start, end)
            with PeakMemory(pids[0]).watch() as warm:
                warm_s, _ = _backtest(client, symbols, start, end)
        frame_rows = int(data["summary"]["data_shape"][0])
        console.print(f"{name}: cold {cold_s:.2f} s, warm {warm_s:.2f} s, {frame_rows:,} rows")
        rows[name] = {
            "rows": frame_rows,
            "idle_mib": idle,
            "cold_s": cold_s,
            "warm_s": warm_s,
            "cold_peak_mib": cold.peak,
            "warm_peak_mib": warm.peak,
            "cold_by_process": cold.at_peak,
            "warm_by_process": warm.at_peak,
        }
    vbt = _vectorbt("scale", root, symbols, summary.first.isoformat(), end)
    return {
        "symbols": SCALE_SYMBOLS,
        "years": SCALE_YEARS,
        "memory_mb": SCALE_MEMORY_MB,
        "answer_max_bytes": SCALE_ANSWER_BYTES,
        "whole": f"{SCALE_YEARS:g} y",
        "slices": rows,
        "vectorbt": vbt,
        "load": os.getloadavg()[0],
    }


def _print(console: Console, out: dict[str, Any]) -> None:
    table = Table(title="strategyq beside vectorbt, same run; each ratio is strategyq / vectorbt")
    for column in ("job", "strategyq", "vectorbt", "ratio", "target", "load avg"):
        table.add_column(column, justify="left" if column == "job" else "right")
    if "aapl" in out:
        _aapl_row(table, out["aapl"])
    if "big" in out:
        _big_rows(table, out["big"])
    if "scale" not in out:
        console.print(table)
        return
    s = out["scale"]
    big, vbt = s["slices"][s["whole"]], s["vectorbt"]
    ratio, mem = big["warm_s"] / vbt["s"], big["warm_peak_mib"] / vbt["peak_mib"]
    label = (
        f"SMA 10/50 backtest, {s['symbols']:,} symbols x {s['whole']} ({big['rows']:,} rows), warm"
    )
    table.add_row(
        label,
        f"{big['warm_s']:.2f} s",
        f"{vbt['s']:.2f} s",
        f"{ratio:.2f}x",
        f"<= 0.50x: {'met' if ratio <= 0.5 else 'NOT met'}",
        f"{s['load']:.2f}",
    )
    table.add_row(
        "  same, peak memory (all processes)",
        f"{big['warm_peak_mib']:,.0f} MiB",
        f"{vbt['peak_mib']:,.0f} MiB",
        f"{mem:.2f}x",
        f"<= 1.0x: {'met' if mem <= 1 else 'NOT met'}",
        f"{s['load']:.2f}",
    )
    console.print(table)
    per = Table(
        title=f"the same backtest: worker memory per million frame rows, "
        f"{s['symbols']:,} symbols x {s['whole']} store (footprint, all processes)"
    )
    for column in (
        "slice",
        "frame rows",
        "cold s",
        "warm s",
        "cold peak MiB / M rows",
        "warm peak MiB / M rows",
        "above idle, cold / warm",
    ):
        per.add_column(column, justify="left" if column == "slice" else "right")
    for name, r in s["slices"].items():
        m = r["rows"] / 1e6
        per.add_row(
            name,
            f"{r['rows']:,}",
            f"{r['cold_s']:.2f}",
            f"{r['warm_s']:.2f}",
            f"{r['cold_peak_mib'] / m:,.0f}",
            f"{r['warm_peak_mib'] / m:,.0f}",
            f"{(r['cold_peak_mib'] - r['idle_mib']) / m:,.0f} / "
            f"{(r['warm_peak_mib'] - r['idle_mib']) / m:,.0f}",
        )
    console.print(per)
    console.print(by_process(s))


def by_process(s: dict[str, Any]) -> Table:
    """Where the large backtest's peaks are: MiB of each process at the peak sample."""
    table = Table(title="the large backtest's peak footprint by process (MiB at the peak sample)")
    runs = [(name, phase) for name in s["slices"] for phase in ("cold", "warm")]
    table.add_column("process")
    for name, phase in runs:
        table.add_column(f"{name} {phase}", justify="right")
    roles = sorted({k for r in s["slices"].values() for p in ("cold", "warm")
                    for k in r[f"{p}_by_process"] if k != "total"})  # fmt: skip
    for role in [*roles, "total"]:
        table.add_row(
            role,
            *(f"{s['slices'][n][f'{p}_by_process'].get(role, 0.0):,.0f}" for n, p in runs),
        )
    return table


def _aapl_row(table: Table, a: dict[str, Any]) -> None:
    ratio = a["strategyq_s"] / a["vectorbt_s"]
    table.add_row(
        "10 x 10 SMA sweep, AAPL 2000-2013, warm, submit to result",
        f"{a['strategyq_s'] * 1000:.0f} ms",
        f"{a['vectorbt_s'] * 1000:.0f} ms",
        f"{ratio:.2f}x the time",
        f"<= 0.50x: {'met' if ratio <= 0.5 else 'NOT met'}",
        f"{a['load']:.2f}",
    )
    if "backtesting_py_s" in a:
        btpy = a["backtesting_py_s"] / a["strategyq_s"]
        table.add_row(
            "  same, backtesting.py optimize (its process pool) in the vectorbt column",
            f"{a['strategyq_s'] * 1000:.0f} ms",
            f"{a['backtesting_py_s'] * 1000:.0f} ms",
            f"{btpy:.1f}x faster",
            f">= 5x faster: {'met' if btpy >= 5 else 'NOT met'}",
            f"{a['backtesting_py_load']:.2f}",
        )


def _big_rows(table: Table, b: dict[str, Any]) -> None:
    ratio = b["strategyq_s"] / b["vectorbt_s"]
    mem = b["strategyq_peak_mib"] / b["vectorbt_peak_mib"]
    table.add_row(
        "1,000 combinations, 100 symbols x 2 y, one slot, time",
        f"{b['strategyq_s']:.2f} s",
        f"{b['vectorbt_s']:.2f} s",
        f"{ratio:.2f}x",
        f"<= 0.33x: {'met' if ratio <= 1 / 3 else 'NOT met'}",
        f"{b['load']:.2f}",
    )
    table.add_row(
        "  same, peak memory (all processes)",
        f"{b['strategyq_peak_mib']:,.0f} MiB",
        f"{b['vectorbt_peak_mib']:,.0f} MiB",
        f"{mem:.2f}x",
        f"<= 1.0x: {'met' if mem <= 1 else 'NOT met'}",
        f"{b['load']:.2f}",
    )
