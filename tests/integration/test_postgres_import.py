"""``strategyq data import postgresql://…`` against a real PostgreSQL server."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from strategyq.cli import app
from strategyq.data import MarketData
from strategyq.data.postgres import PostgresSource, import_postgres, redact
from strategyq.errors import DataError, ImportRejected
from tests import warm_cli
from tests.conftest import free_port
from tests.integration.pg import PasswordServer, execute

BARS = (
    "CREATE TABLE bars (ticker text, date date, open float8, high float8, low float8, "
    "close float8, volume float8, adj_close float8)"
)


def _rows(*rows: tuple[str, str, float, float, float, float, float]) -> str:
    values = ",".join(
        f"('{t}', DATE '{d}', {o}, {h}, {lo}, {c}, {v}, {c})" for t, d, o, h, lo, c, v in rows
    )
    return f"INSERT INTO bars VALUES {values}"


def _session_rows(ticker: str, days: list[str], close: float = 10.0) -> str:
    return _rows(*[(ticker, d, close, close + 1, close - 1, close, 100.0) for d in days])


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


DAYS = [f"2024-01-{d:02d}" for d in (2, 3, 4, 5, 8, 9, 10)]


@pytest.fixture
def cli(home: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("COLUMNS", "240")
    for name in [n for n in os.environ if n.startswith("PG")]:
        monkeypatch.delenv(name)
    return CliRunner()


def test_full_import_of_a_table(pg_url: str, tmp_path: Path) -> None:
    execute(pg_url, BARS, _session_rows("aaa", DAYS[:5]), _session_rows("BBB", DAYS[:3], 20))
    root = tmp_path / "store"
    summary = import_postgres(root, PostgresSource(pg_url, table="public.bars"))
    assert (summary.tickers, summary.rows, summary.skipped) == (["AAA", "BBB"], 8, [])
    entries = MarketData(root).entries()
    assert (entries["AAA"].rows, str(entries["AAA"].last)) == (5, "2024-01-08")
    frame = MarketData(root).load(["BBB"], None, None).frame
    assert frame["close"].tolist() == [20.0, 20.0, 20.0]
    assert frame["adj_factor"].tolist() == [1.0, 1.0, 1.0]


def test_incremental_import_reads_each_ticker_from_its_own_last_session(
    pg_url: str, tmp_path: Path
) -> None:
    execute(pg_url, BARS, _session_rows("AAA", DAYS[:5]), _session_rows("BBB", DAYS[:2]))
    root = tmp_path / "store"
    import_postgres(root, PostgresSource(pg_url, table="bars"))
    execute(
        pg_url,
        # Corrections: AAA's last stored session and an older one, BBB's last one.
        "UPDATE bars SET close = 10.5, adj_close = 10.5 "
        "WHERE ticker = 'AAA' AND date IN ('2024-01-08', '2024-01-03')",
        "UPDATE bars SET close = 9.5, adj_close = 9.5 WHERE ticker = 'BBB' AND date = '2024-01-03'",
        _session_rows("AAA", DAYS[5:]),
        _session_rows("BBB", DAYS[2:4]),
        _session_rows("NEW", DAYS),
    )
    summary = import_postgres(root, PostgresSource(pg_url, table="bars", since="auto"))
    # AAA: 01-08 again + 2 new; BBB: 01-03 again + 2 new; NEW: all 7.
    assert summary.rows == 3 + 3 + 7
    market = MarketData(root)
    aaa = market.load(["AAA"], None, None).frame
    assert aaa["date"].dt.strftime("%m-%d").tolist() == [d[5:] for d in DAYS]
    closes = dict(zip(aaa["date"].dt.strftime("%m-%d"), aaa["close"], strict=True))
    assert closes["01-08"] == 10.5, "the last stored session is read again and upserted"
    assert closes["01-03"] == 10.0, "sessions before a ticker's last one are not read"
    bbb = market.load(["BBB"], None, None).frame
    assert bbb["close"].tolist() == [10.0, 9.5, 10.0, 10.0]
    again = import_postgres(root, PostgresSource(pg_url, table="bars", since="auto"))
    assert again.rows == 3, "a rerun reads only each ticker's last session"


def test_query_with_a_column_map_and_timestamps_in_the_exchange_zone(
    pg_url: str, cli: CliRunner, home: Path
) -> None:
    execute(
        pg_url,
        "CREATE TABLE prices (sym text, ts timestamptz, o numeric, h numeric, lo numeric, "
        "c numeric, vol bigint, venue text)",
        # Midnight in New York is 05:00 or 04:00 UTC; 20:00 New York is the next day in UTC.
        "INSERT INTO prices VALUES "
        "('XYZ', '2024-03-08 00:00:00-05', 10, 11, 9, 10.5, 1000, 'N'),"
        "('XYZ', '2024-03-11 20:00:00-04', 10, 12, 9, 11.5, 2000, 'N'),"
        "('QQQ', '2024-03-11 00:00:00-04', 5, 6, 4, 5.5, 10, 'X')",
    )
    result = cli.invoke(
        app,
        [
            "data", "import", pg_url, "--query", "SELECT * FROM prices WHERE venue = 'N';",
            "--map", "ticker=sym,date=ts,open=o,high=h,low=lo,close=c,volume=vol",
            "--timezone", "America/New_York",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "2 rows of 1 ticker(s) (XYZ)" in result.output
    frame = MarketData(home / "data").load(["XYZ"], None, None).frame
    assert frame["date"].dt.strftime("%Y-%m-%d").tolist() == ["2024-03-08", "2024-03-11"]
    assert frame["close"].tolist() == [10.5, 11.5]
    assert frame["volume"].tolist() == [1000.0, 2000.0]


def test_a_missing_column_says_how_to_map_it(pg_url: str, cli: CliRunner) -> None:
    execute(pg_url, "CREATE TABLE p (symbol text, date date, open float8)")
    result = cli.invoke(app, ["data", "import", pg_url, "--table", "p"])
    assert result.exit_code == 1
    assert "no column for ticker (looked for 'ticker')" in result.output
    assert "--map" in result.output and "Traceback" not in result.output


def test_bad_rows_are_all_reported_and_nothing_is_stored(pg_url: str, tmp_path: Path) -> None:
    execute(
        pg_url,
        "CREATE TABLE bars (ticker text, date date, open float8, high float8, low float8, "
        "close text, volume float8)",
        "INSERT INTO bars VALUES "
        "('AAA', '2024-01-02', 10, 11, 9, '10', 100),"
        "('AAA', '2024-01-03', 'NaN', 11, 9, '10', 100),"
        "('AAA', '2024-01-04', -1, 11, 9, '10', 100),"
        "('AAA', '2024-01-05', 10, 8, 9, '10', 100),"
        "('AAA', '2024-01-02', 10, 11, 9, '10', 100),"
        "('AAA', '2024-01-08', 10, 11, 9, 'n/a', 100),"
        "('AAA', NULL, 10, 11, 9, '10', 100),"
        "('BBB', '2024-01-02', 10, 11, 9, '10', 100)",
    )
    root = tmp_path / "store"
    import_postgres(root, PostgresSource(pg_url, query="SELECT * FROM bars WHERE ticker = 'BBB'"))
    before = _snapshot(root)
    with pytest.raises(ImportRejected) as exc:
        import_postgres(root, PostgresSource(pg_url, table="bars"))
    reasons = [why for _source, _line, why in exc.value.problems]
    expected = [
        "AAA 2024-01-03: open is 'nan': expected a positive number",
        "AAA 2024-01-04: open is '-1.0': expected a positive number",
        "AAA 2024-01-05: high 8 is below low 9",
        "AAA 2024-01-02: duplicate session: the same ticker and date appear on an earlier row",
        "AAA 2024-01-08: close is 'n/a': expected a positive number",
        "AAA NULL: date 'NULL' is not a date",
    ]
    for reason in expected:
        assert any(r.startswith(reason) for r in reasons), (reason, reasons)
    assert len(reasons) == len(expected)
    assert all(source.startswith("postgresql://") for source, _, _ in exc.value.problems)
    assert "nothing was stored" in str(exc.value)
    assert _snapshot(root) == before
    kept = import_postgres(root, PostgresSource(pg_url, table="bars"), skip_bad_rows=True)
    assert (kept.rows, len(kept.skipped)) == (2, len(expected))
    assert MarketData(root).entries()["AAA"].rows == 1


def test_a_connection_failure_is_one_line_without_the_password(cli: CliRunner) -> None:
    url = f"postgresql://importer:s3cret-pw@127.0.0.1:{free_port()}/market"
    result = cli.invoke(app, ["data", "import", url, "--table", "bars"])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: cannot connect to PostgreSQL at postgresql://importer:***@")
    assert "Connection refused" in lines[0]
    assert "s3cret-pw" not in result.output


@pytest.fixture(scope="module")
def password_server() -> Iterator[PasswordServer]:
    server = PasswordServer(free_port())
    try:
        server.start()
        execute(
            f"postgresql://postgres:{server.password}@127.0.0.1:{server.port}/postgres",
            BARS,
            _session_rows("PWD", DAYS[:2]),
        )
        yield server
    finally:
        server.stop()


def test_a_wrong_password_is_one_line(password_server: PasswordServer, cli: CliRunner) -> None:
    url = f"postgresql://postgres:wrong-one@127.0.0.1:{password_server.port}/postgres"
    result = cli.invoke(app, ["data", "import", url, "--table", "bars"])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert 'password authentication failed for user "postgres"' in lines[0]
    assert "wrong-one" not in result.output


def test_the_password_may_come_from_pgpassfile_or_pgpassword(
    password_server: PasswordServer,
    cli: CliRunner,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"127.0.0.1:{password_server.port}:*:postgres:{password_server.password}\n")
    passfile.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(passfile))
    result = cli.invoke(app, ["data", "import", password_server.url, "--table", "bars"])
    assert result.exit_code == 0, result.output
    monkeypatch.delenv("PGPASSFILE")
    monkeypatch.setenv("PGPASSWORD", password_server.password)
    result = cli.invoke(app, ["data", "import", password_server.url, "--table", "bars"])
    assert result.exit_code == 0, result.output
    assert "2 rows of 1 ticker(s) (PWD)" in result.output


def test_a_table_name_is_a_name_not_sql(tmp_path: Path) -> None:
    url = f"postgresql://u@127.0.0.1:{free_port()}/m"
    for table in ("bars; DROP TABLE bars", 'x"; DROP TABLE y; --', "a.b.c"):
        with pytest.raises(DataError, match="is not a table name"):
            import_postgres(tmp_path, PostgresSource(url, table=table))


def test_redact_hides_only_the_password() -> None:
    assert redact("postgresql://u:p%40ss@db.example:5433/m?sslmode=require") == (
        "postgresql://u:***@db.example:5433/m?sslmode=require"
    )
    assert redact("postgresql://u@db/m") == "postgresql://u@db/m"


@pytest.mark.slow
def test_an_import_killed_midway_leaves_the_store_as_it_was(pg_url: str, home: Path) -> None:
    execute(
        pg_url,
        BARS,
        _session_rows("AAA", DAYS),
        # 4,000 more rows, streamed slowly so that the kill lands while they arrive.
        "INSERT INTO bars SELECT 'S' || s, DATE '2000-01-03' + s, 10, 11, 9, 10, 1, 10 "
        "FROM generate_series(1, 4000) s",
    )
    root = home / "data"
    import_postgres(root, PostgresSource(pg_url, query="SELECT * FROM bars WHERE ticker = 'AAA'"))
    before = _snapshot(root)
    slow = f"{pg_url}?application_name=strategyq-killed"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    proc = warm_cli.popen(
        ["data", "import", slow, "--query", "SELECT * FROM bars WHERE pg_sleep(0.002)::text = ''"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        query = (
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
            "'strategyq-killed' AND state = 'active'"
        )
        while execute(pg_url, query)[0][0][0] == 0:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, "the import never started its query"
            time.sleep(0.05)
        time.sleep(1.0)  # rows are arriving
        assert proc.poll() is None, "the import finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
        if proc.stdout:
            proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    assert _snapshot(root) == before
    assert MarketData(root).tickers() == ["AAA"]
