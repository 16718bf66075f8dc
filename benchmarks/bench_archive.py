"""The run archive: does archiving keep up with the queue, and how fast is a search?

``python -m benchmarks archive`` (``ARCHIVE_BENCH_TASKS``, default 10000;
``ARCHIVE_BENCH_ROWS``, default 1000000; ``STRATEGYQ_TEST_PG`` the PostgreSQL server).

1. Throughput: ``n`` trivial backtests through 2 worker processes, once with the
   archive off and once with it on (``strategyq archive`` into PostgreSQL), in the same
   run and in alternating halves (off, on, off, on) so both see the same machine; the
   ratio of the times, and the archive's lag when the last task has finished.
2. Search: ``rows`` archived runs bulk-loaded with COPY into PostgreSQL, then
   ``GET /v1/runs`` with a metric filter through a real ``strategyq serve``, beside a
   ``SELECT 1`` round trip and an HTTP ``/healthz`` round trip, interleaved.
"""

from __future__ import annotations

import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import redis
from rich.console import Console
from rich.table import Table

from strategyq import add_backtest_task
from strategyq.archive.schema import METRICS
from strategyq.archive.store import Archive
from strategyq.data import write_synthetic
from strategyq.data.synth import SYNTH_END
from strategyq.embedded_valkey import EmbeddedServer
from strategyq.queue import archive_feed, keys

TRIVIAL = (
    "def trivial(df):\n"
    "    return [{'ticker': df['ticker'].iloc[0], 'date': str(df['date'].iloc[-1])}]\n"
)
PG = os.environ.get("STRATEGYQ_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres")


def load_average() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def pg_db(name: str) -> str:
    return PG.rsplit("/", 1)[0] + "/" + name


def admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(sql)


@contextmanager
def database(prefix: str) -> Iterator[str]:
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin(f"CREATE DATABASE {name}")
    try:
        yield pg_db(name)
    finally:
        admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@contextmanager
def process(env: dict[str, str], *args: str) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-m", "strategyq", *args], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(60)


def push_and_wait(client: redis.Redis, n: int, start: str, end: str) -> float:
    """Seconds from the first push to the last of ``n`` trivial backtests finishing."""
    before = client.zcard(keys.RECENT)
    t = time.perf_counter()
    for _ in range(n):
        add_backtest_task(client, uuid.uuid4().hex, TRIVIAL, ["SYN0001"], start, end)
    while client.zcard(keys.RECENT) < before + n:
        time.sleep(0.005)
    return time.perf_counter() - t


def throughput(console: Console, n: int) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory(prefix="strategyq-bench-archive-") as tmp,
        database("strategyq_i25_archive_bench") as url,
    ):
        home = Path(tmp)
        write_synthetic(home / "data", 1, 1, seed=1)
        server = EmbeddedServer(home / "valkey")
        redis_url = server.ensure_running()
        client = redis.Redis.from_url(redis_url)
        client.flushdb()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "STRATEGYQ_"))}
        env.update(REDIS_URL=redis_url, STRATEGYQ_HOME=str(home), STRATEGYQ_ARCHIVE_URL=url,
                   STRATEGYQ_RECENT_MAX=str(4 * n))  # fmt: skip
        start = (SYNTH_END - timedelta(days=180)).isoformat()
        end = SYNTH_END.isoformat()
        times: dict[str, float] = {"off": 0.0, "on": 0.0}
        lags: list[float] = []
        half = n // 2
        try:
            with process({**env, "STRATEGYQ_WORKER_ID": "bench-a"}, "worker",
                         "--metrics-port", "0", "--log-level", "WARNING"), \
                 process({**env, "STRATEGYQ_WORKER_ID": "bench-b"}, "worker",
                         "--metrics-port", "0", "--log-level", "WARNING"):  # fmt: skip
                while client.scard(keys.WORKERS) < 2:
                    time.sleep(0.05)
                push_and_wait(client, 200, start, end)  # warm both workers
                for label in ("off", "on", "off", "on"):
                    if label == "off":
                        archive_feed.switch_off(client)
                        times["off"] += push_and_wait(client, half, start, end)
                        continue
                    with process(env, "archive", "--metrics-port", "0", "--log-level",
                                 "WARNING"):  # fmt: skip
                        # Timed once it has caught up with what ended before it started.
                        while not archive_feed.is_on(client):
                            time.sleep(0.01)
                        base = client.zcard(keys.RECENT)
                        archive = Archive.open(url)
                        try:
                            while archive.count() < base:
                                time.sleep(0.05)
                        finally:
                            archive.close()
                        times["on"] += push_and_wait(client, half, start, end)
                        done = time.perf_counter()
                        expected_runs = base + half
                        archive = Archive.open(url)
                        try:
                            while archive.count() < expected_runs:
                                time.sleep(0.01)
                        finally:
                            archive.close()
                        lags.append(time.perf_counter() - done)
        finally:
            server.stop()
    ratio = times["on"] / times["off"]
    table = Table(title=f"archiving {n} trivial tasks through 2 workers (load {load_average()})")
    for column in ("", "archive off", "archive on", "on / off", "lag at the end (each half)"):
        table.add_column(column)
    table.add_row(
        "wall time, s", f"{times['off']:.1f}", f"{times['on']:.1f}", f"{ratio:.3f}× (≤ 1.05)",
        " / ".join(f"{lag:.2f} s" for lag in lags) + " (≤ 2 s)",
    )  # fmt: skip
    console.print(table)
    return {"tasks": n, "off_s": times["off"], "on_s": times["on"], "ratio": ratio,
            "lag_s": lags, "load": load_average()}  # fmt: skip


def bulk_load(url: str, rows: int) -> None:
    """``rows`` runs, COPYed in: realistic columns, a small compressed result each."""
    import psycopg

    Archive.open(url).close()  # the schema
    rng = random.Random(7)
    names = [f"strategy {i}" for i in range(200)]
    symbols = ["AAPL", "MSFT", "IBM", "GOOG", "FB"]
    blob = zlib.compress(orjson.dumps({"status": "completed", "data": {"success": True}}))
    now = int(time.time() * 1000)
    columns = ("task_id", "task_type", "status", "finished_ms", "archived_ms", "name",
               "fingerprint", "symbols", *METRICS, "result_bytes", "result")  # fmt: skip
    with psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy(f"COPY runs ({', '.join(columns)}) FROM STDIN") as copy:
            for i in range(rows):
                sharpe = rng.gauss(0.5, 0.8)
                values = [
                    rng.gauss(0.1, 0.2), sharpe, sharpe * 1.2, -abs(rng.gauss(0.2, 0.1)),
                    rng.gauss(0.05, 0.1), rng.random(), float(rng.randint(0, 200)),
                    rng.random() * 3, rng.random() / 3, rng.random(), rng.random(),
                ]  # fmt: skip
                copy.write_row(
                    (f"run-{i:08d}", "backtest", "completed", now - i * 1000, now,
                     names[i % 200], f"{i % 5000:016x}", symbols[i % 5], *values, 200, blob)
                )  # fmt: skip
        conn.commit()
        conn.execute("ANALYZE runs")
        conn.commit()


def search(console: Console, rows: int) -> dict[str, Any]:
    import psycopg

    from benchmarks.bench_e2e import pct  # same percentile rule

    with (
        tempfile.TemporaryDirectory(prefix="strategyq-bench-runs-") as tmp,
        database("strategyq_i25_runs_bench") as url,
    ):
        t = time.perf_counter()
        bulk_load(url, rows)
        load_s = time.perf_counter() - t
        port = 18000 + os.getpid() % 1000
        env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "STRATEGYQ_"))}
        server = EmbeddedServer(Path(tmp) / "valkey")
        env.update(REDIS_URL=server.ensure_running(), STRATEGYQ_HOME=tmp,
                   STRATEGYQ_ARCHIVE_URL=url)  # fmt: skip
        queries = {
            "sharpe_ratio>1": {"metric": "sharpe_ratio>1"},
            "sharpe_ratio>3 (0.1 %)": {"metric": "sharpe_ratio>3"},
            "sharpe_ratio>1 & name": {"metric": "sharpe_ratio>1", "name": "strategy 7"},
        }
        samples: dict[str, list[float]] = {k: [] for k in (*queries, "SELECT 1", "GET /healthz")}
        try:
            with process(env, "serve", "--port", str(port), "--log-level", "WARNING"), \
                 httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as http, \
                 psycopg.connect(url, autocommit=True) as conn:  # fmt: skip
                deadline = time.monotonic() + 60
                while True:
                    try:
                        if http.get("/readyz").status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    if time.monotonic() > deadline:
                        raise RuntimeError("strategyq serve did not start")
                    time.sleep(0.1)
                for params in queries.values():  # warm: the connection, the plans, the cache
                    http.get("/v1/runs", params=params).raise_for_status()
                for _ in range(200):
                    t = time.perf_counter()
                    conn.execute("SELECT 1").fetchall()
                    samples["SELECT 1"].append((time.perf_counter() - t) * 1000)
                    t = time.perf_counter()
                    http.get("/healthz")
                    samples["GET /healthz"].append((time.perf_counter() - t) * 1000)
                    for label, params in queries.items():
                        t = time.perf_counter()
                        answer = http.get("/v1/runs", params=params)
                        samples[label].append((time.perf_counter() - t) * 1000)
                        if answer.status_code != 200 or len(answer.json()["runs"]) == 0:
                            raise RuntimeError(answer.text)
        finally:
            server.stop()
    base = statistics.median(samples["SELECT 1"])
    table = Table(title=f"GET /v1/runs over {rows:,} runs in PostgreSQL (load {load_average()})")
    for column in ("", "p50 ms", "p95 ms", "p50 / SELECT 1", "target"):
        table.add_column(column)
    out: dict[str, Any] = {"rows": rows, "copy_s": load_s, "load": load_average()}
    for label, values in samples.items():
        p50 = statistics.median(values)
        out[label] = {"p50_ms": p50, "p95_ms": pct(values, 0.95)}
        target = "≤ 100 ms p50" if label in queries else "yardstick"
        table.add_row(label, f"{p50:.2f}", f"{pct(values, 0.95):.2f}", f"{p50 / base:.1f}×", target)
    console.print(f"bulk load: {rows:,} rows by COPY in {load_s:.1f} s")
    console.print(table)
    return out


def _db_bytes(archive: Archive) -> int:
    """What the archive's tables and indexes take on disk now."""
    db = archive.db
    if db.dialect == "postgresql":
        tables = ("runs", "run_tags", "run_symbols", "sweep_combinations")
        return sum(int(db.query("SELECT pg_total_relation_size(?)", (t,))[0][0]) for t in tables)
    db.connection().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    pages = db.query("PRAGMA page_count")[0][0]
    size = db.query("PRAGMA page_size")[0][0]
    free = db.query("PRAGMA freelist_count")[0][0]
    return int((pages - free) * size)


def sizing(console: Console, copies: int = 300) -> dict[str, Any]:
    """Bytes per archived run of each type: each run is made once through a real worker,
    then written ``copies`` times under new ids; the database's growth divided by
    ``copies``, on SQLite and on PostgreSQL."""
    from dataclasses import replace as dc_replace

    from strategyq import add_screening_task, add_sweep_task
    from strategyq.archive.record import build
    from strategyq.data import load_sample
    from strategyq.examples import source
    from strategyq.settings import Settings
    from strategyq.worker import Worker

    out: dict[str, Any] = {}
    with (
        tempfile.TemporaryDirectory(prefix="strategyq-bench-size-") as tmp,
        database("strategyq_i25_size_bench") as pg_url,
    ):
        home = Path(tmp)
        load_sample(home / "data")
        server = EmbeddedServer(home / "valkey")
        redis_url = server.ensure_running()
        client = redis.Redis.from_url(redis_url)
        client.flushdb()
        archive_feed.switch_on(client)
        symbols = ["AAPL", "MSFT", "IBM", "GOOG"]
        add_backtest_task(client, "backtest", source("sma_cross"), symbols, "2005-01-01",
                          "2012-12-31", name="sma cross", tags=["trend"])  # fmt: skip
        add_screening_task(client, "screening", source("gap_up"), symbols, 100)
        grid = {"fast": [5, 10, 20, 30], "slow": [50, 100, 150, 200]}
        add_sweep_task(client, "sweep", source("sma_params"), symbols, "2005-01-01",
                       "2012-12-31", grid)  # fmt: skip
        add_backtest_task(client, "error", "def s(df):\n    return 1/0\n", symbols,
                          "2005-01-01", "2012-12-31")  # fmt: skip
        settings = Settings.from_env({"REDIS_URL": redis_url, "STRATEGYQ_HOME": str(home)})
        Worker(dc_replace(settings, worker_id="size"), burst=True, handle_signals=False).run()
        made = {}
        for kind in ("backtest", "screening", "sweep", "error"):
            result = client.get(keys.result(kind))
            task = client.get(keys.task(kind))
            made[kind] = build(kind, result, task, finished_ms=int(time.time() * 1000))
        server.stop()
        for label, url in (("sqlite", f"sqlite:///{home / 'size.db'}"), ("postgresql", pg_url)):
            archive = Archive.open(url)
            try:
                for kind, run in made.items():
                    before = _db_bytes(archive)
                    copies_of = [dc_replace(run, task_id=f"{kind}-{i}") for i in range(copies)]
                    for i in range(0, copies, 100):
                        archive.write(copies_of[i : i + 100])
                    grown = (_db_bytes(archive) - before) / copies
                    entry = out.setdefault(kind, {})
                    entry["result_json"] = len(run.raw_result)
                    entry["compressed"] = len(zlib.compress(run.raw_result, 6))
                    entry[label] = grown
            finally:
                archive.close()
    table = Table(title=f"bytes per archived run ({copies} of each; load {load_average()})")
    for column in ("type", "result JSON", "compressed", "SQLite", "PostgreSQL"):
        table.add_column(column)
    for kind, entry in out.items():
        table.add_row(kind, f"{entry['result_json']:,}", f"{entry['compressed']:,}",
                      f"{entry['sqlite']:,.0f}", f"{entry['postgresql']:,.0f}")  # fmt: skip
    console.print(table)
    return out


def main() -> dict[str, Any]:
    console = Console()
    n = int(os.environ.get("ARCHIVE_BENCH_TASKS", "10000"))
    rows = int(os.environ.get("ARCHIVE_BENCH_ROWS", "1000000"))
    out: dict[str, Any] = {}
    if os.environ.get("ARCHIVE_BENCH_SIZING", "1") != "0":
        out["sizing"] = sizing(console)
    if n:
        out["throughput"] = throughput(console, n)
    if rows:
        out["search"] = search(console, rows)
    return out


if __name__ == "__main__":
    main()
