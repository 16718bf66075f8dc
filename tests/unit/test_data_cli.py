"""``strategyq data …`` through typer's CliRunner, including its error exits."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from strategyq.cli import app


@pytest.fixture
def data_cli(home: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("COLUMNS", "200")  # wide enough that rich never folds a table cell
    return CliRunner()


def test_sample_list_and_info(data_cli: CliRunner, home: Path) -> None:
    result = data_cli.invoke(app, ["data", "sample"])
    assert result.exit_code == 0, result.output
    assert "12,154 rows of 5 ticker(s)" in result.output
    listing = data_cli.invoke(app, ["data", "list"])
    assert listing.exit_code == 0
    for ticker in ("AAPL", "FB", "GOOG", "IBM", "MSFT"):
        assert ticker in listing.output
    assert "2000-03-01" in listing.output
    info = data_cli.invoke(app, ["data", "info", "aapl"])
    assert info.exit_code == 0 and "2013-03-01" in info.output and "3,270" in info.output


def test_info_unknown_ticker_is_one_line_error(data_cli: CliRunner, home: Path) -> None:
    result = data_cli.invoke(app, ["data", "info", "NOPE"])
    assert result.exit_code == 1
    assert "NOPE is not in the store" in result.output
    assert "Traceback" not in result.output


def test_list_empty_store(data_cli: CliRunner, home: Path) -> None:
    result = data_cli.invoke(app, ["data", "list"])
    assert result.exit_code == 0 and "empty" in result.output


def test_synth(data_cli: CliRunner, home: Path) -> None:
    result = data_cli.invoke(
        app, ["data", "synth", "--symbols", "4", "--years", "1", "--seed", "3"]
    )
    assert result.exit_code == 0, result.output
    assert "of 4 ticker(s)" in result.output
    assert "SYN0004" in data_cli.invoke(app, ["data", "list"]).output
    bad = data_cli.invoke(app, ["data", "synth", "--symbols", "0"])
    assert bad.exit_code == 1 and "--symbols must be" in bad.output


def test_import_good_and_bad(data_cli: CliRunner, home: Path, tmp_path: Path) -> None:
    good = tmp_path / "QQQ.csv"
    good.write_text("Date,Open,High,Low,Close,Adj Close,Volume\n2024-01-02,1,2,1,1.5,1.5,10\n")
    result = data_cli.invoke(app, ["data", "import", str(good)])
    assert result.exit_code == 0, result.output
    assert "QQQ" in data_cli.invoke(app, ["data", "list"]).output
    bad = tmp_path / "bad.csv"
    bad.write_text("Date,Open,High,Low,Close,Adj Close,Volume\n2024-01-03,1,1,2,1.5,1.5,10\n")
    result = data_cli.invoke(app, ["data", "import", str(bad), "--ticker", "QQQ"])
    assert result.exit_code == 1
    assert "high 1 is below low 2" in result.output and "bad.csv" in result.output
    assert "nothing was stored" in result.output


def test_import_yfinance_file_and_skip_bad_rows(
    data_cli: CliRunner, home: Path, tmp_path: Path
) -> None:
    dst = tmp_path / "SPY.csv"
    dst.write_text(
        "Date,Open,High,Low,Close,Adj Close,Volume\n"
        "2011-12-19 00:00:00-05:00,1,2,1,1.5,1.5,10\n"
        "2012-04-02 00:00:00-04:00,1,2,1,1.5,1.5,10\n"
        "2012-04-03 00:00:00-04:00,1,2,1,-1,1.5,10\n"
    )
    refused = data_cli.invoke(app, ["data", "import", str(dst)])
    assert refused.exit_code == 1 and "Traceback" not in refused.output
    assert "close is '-1': expected a positive number" in refused.output
    assert "--skip-bad-rows" in refused.output
    result = data_cli.invoke(app, ["data", "import", str(dst), "--skip-bad-rows"])
    assert result.exit_code == 0, result.output
    assert "Skipped rows" in result.output and "2 rows of 1 ticker(s) (SPY)" in result.output
    assert "1 problem(s) skipped" in result.output
    dates = data_cli.invoke(app, ["data", "info", "SPY"]).output
    assert "2011-12-19" in dates and "2012-04-02" in dates


def test_postgres_options_need_a_url(data_cli: CliRunner, tmp_path: Path) -> None:
    result = data_cli.invoke(app, ["data", "import", str(tmp_path / "x.csv"), "--table", "bars"])
    assert result.exit_code == 1 and "name a postgresql:// URL first" in result.output
