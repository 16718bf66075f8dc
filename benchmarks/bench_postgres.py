"""PostgreSQL import: 1,000 symbols x 10 years (2.5 M rows) against `psql \\copy` of the same rows.

Needs a PostgreSQL server: ``STRATEGYQ_BENCH_PG`` (default
``postgresql://postgres@127.0.0.1:5432/postgres``) must be able to create a database.
The bars table is filled date by date, as a daily refresh appends them, so its
physical order is by session, not by ticker.

Rows, each beside its yardstick measured in the same run:

* full import (``strategyq data import URL --table bars`` in a fresh process:
  read, check, store) against ``psql -c "\\copy (SELECT …) TO '/dev/null'"``;
  target <= 2x, peak RSS <= 1.5 GiB;
* the two drivers' fetch alone: ADBC PostgreSQL (Arrow batches) and psycopg 3 binary
  COPY (``rows()`` with the column types set), both against the same ``psql`` time;
* an incremental import (``--since auto``, one new session per ticker), as a share of
  the full import.
"""

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
from urllib.parse import urlsplit, urlunsplit

from rich.console import Console
from rich.table import Table

SYMBOLS = 1000
SESSIONS = 2500
REPEATS = 3
SELECT = "SELECT ticker, date, open, high, low, close, volume, adj_close FROM bars"
RATIO_TARGET = 2.0
RSS_TARGET_MIB = 1536.0

_IMPORT = """
import json, resource, sys, time
from pathlib import Path
from strategyq.data.postgres import PostgresSource, import_postgres
source = PostgresSource(sys.argv[1], table="bars", since=sys.argv[3] or None)
t = time.perf_counter()
summary = import_postgres(Path(sys.argv[2]), source)
elapsed = time.perf_counter() - t
print(json.dumps({"s": elapsed, "rows": summary.rows,
                  "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

_ADBC = """
import json, sys, time
import adbc_driver_postgresql.dbapi as adbc
t = time.perf_counter()
with adbc.connect(sys.argv[1], autocommit=True) as conn:
    cur = conn.cursor()
    cur.execute(sys.argv[2])
    rows = sum(b.num_rows for b in cur.fetch_record_batch())
print(json.dumps({"s": time.perf_counter() - t, "rows": rows}))
"""

_PSYCOPG = """
import json, sys, time
import psycopg
t = time.perf_counter()
rows = 0
with psycopg.connect(sys.argv[1]) as conn, conn.cursor() as cur:
    with cur.copy(f"COPY ({sys.argv[2]}) TO STDOUT (FORMAT BINARY)") as copy:
        copy.set_types(["text", "date"] + ["float8"] * 6)
        for _row in copy.rows():
            rows += 1
print(json.dumps({"s": time.perf_counter() - t, "rows": rows}))
"""


def _with_db(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def _psql(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, *args],
        capture_output=True,
        text=True,
        check=True,
    )


def _fill(url: str) -> None:
    _psql(
        url,
        "-c",
        "CREATE TABLE bars (ticker text, date date, open float8, high float8, low float8, "
        "close float8, volume float8, adj_close float8)",
    )
    # Session-major, as daily appends leave it; prices vary so nothing compresses away.
    _psql(
        url,
        "-c",
        f"""INSERT INTO bars
        SELECT 'S' || lpad(s::text, 4, '0'), d,
               10 + s % 50 + n * 0.01, 11 + s % 50 + n * 0.01, 9 + s % 50 + n * 0.01,
               10.5 + s % 50 + n * 0.01, 1000 + (s * n) % 9973, 10.5 + s % 50 + n * 0.01
        FROM (SELECT d::date AS d, row_number() OVER (ORDER BY d) AS n
              FROM generate_series('2014-01-01'::date, '2026-12-31'::date, '1 day') d
              WHERE extract(isodow FROM d) < 6 LIMIT {SESSIONS}) days,
             generate_series(1, {SYMBOLS}) s
        ORDER BY d, s""",
    )
    _psql(url, "-c", "VACUUM ANALYZE bars")


def _run(code: str, *args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, check=True
    )
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def _psql_copy(url: str) -> float:
    started = time.perf_counter()
    _psql(url, "-c", f"\\copy ({SELECT}) TO '/dev/null'")
    return time.perf_counter() - started


def main() -> dict[str, Any]:
    console = Console(width=110)
    load_before = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    server = os.environ.get("STRATEGYQ_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
    name = f"strategyq_bench_{os.getpid()}"
    _psql(server, "-c", f"CREATE DATABASE {name}")
    url = _with_db(server, name)
    try:
        started = time.perf_counter()
        _fill(url)
        console.print(
            f"filled {SYMBOLS * SESSIONS:,} rows in {time.perf_counter() - started:.1f} s"
        )
        psql_s: list[float] = []
        full: list[dict[str, Any]] = []
        adbc: list[float] = []
        psycopg: list[float] = []
        with tempfile.TemporaryDirectory() as tmp:
            for i in range(REPEATS):
                # Interleaved, so every figure sees the same machine as its yardstick.
                psql_s.append(_psql_copy(url))
                store = Path(tmp) / f"store{i}"
                full.append(_run(_IMPORT, url, str(store), ""))
                adbc.append(_run(_ADBC, url, SELECT)["s"])
                psycopg.append(_run(_PSYCOPG, url, SELECT)["s"])
            _psql(
                url,
                "-c",
                "INSERT INTO bars SELECT ticker, date + 1, open, high, low, close, volume, "
                "adj_close FROM bars WHERE date = (SELECT max(date) FROM bars)",
            )
            incremental = _run(_IMPORT, url, str(Path(tmp) / "store0"), "auto")
    finally:
        _psql(server, "-c", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    yard = statistics.median(psql_s)
    full_s = statistics.median(r["s"] for r in full)
    rss = max(r["rss_mib"] for r in full)
    rows = {
        "full import (read, check, store)": (full_s, RATIO_TARGET),
        "fetch only: ADBC -> Arrow": (statistics.median(adbc), None),
        "fetch only: psycopg 3 COPY rows()": (statistics.median(psycopg), None),
    }
    table = Table(title=f"PostgreSQL import, {SYMBOLS:,} symbols x {SESSIONS:,} sessions")
    console.print(f"load average before the runs: {load_before}")
    for column in ("case", "time s", "psql \\copy s", "ratio", "target", "ok"):
        table.add_column(column, justify="left" if column == "case" else "right")
    out: dict[str, Any] = {"rows": full[0]["rows"], "psql_copy_s": yard, "cases": {}}
    for label, (seconds, target) in rows.items():
        ratio = seconds / yard
        ok = "" if target is None else ("yes" if ratio <= target else "NO")
        table.add_row(
            label, f"{seconds:.2f}", f"{yard:.2f}", f"{ratio:.2f}x",
            "" if target is None else f"<= {target:g}x", ok,
        )  # fmt: skip
        out["cases"][label] = {"s": seconds, "ratio": ratio, "target": target}
    table.add_row(
        "--since auto, 1 new session",
        f"{incremental['s']:.2f}",
        "",
        f"{incremental['s'] / full_s:.2f}x of full",
        "",
        "",
    )
    table.add_row(
        "peak RSS, full import",
        f"{rss:,.0f} MiB",
        "",
        f"{rss / RSS_TARGET_MIB:.2f}x",
        f"<= {RSS_TARGET_MIB:,.0f} MiB",
        "yes" if rss <= RSS_TARGET_MIB else "NO",
    )
    console.print(table)
    out["incremental"] = {"s": incremental["s"], "rows": incremental["rows"]}
    out["peak_rss_mib"] = rss
    out["load_average"] = load_before
    return out


if __name__ == "__main__":
    main()
