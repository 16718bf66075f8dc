"""Imports: formats, upserts, all-or-nothing writes and every rejected input."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from strategyq.data import MarketData, import_files
from strategyq.data.store import Store
from strategyq.errors import ImportRejected

HEADER = "ticker,date,open,high,low,close,volume\n"
YAHOO = "Date,Open,High,Low,Close,Adj Close,Volume\n"


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _reasons(exc: pytest.ExceptionInfo[ImportRejected]) -> list[tuple[str, int | None, str]]:
    return exc.value.problems


def test_long_csv_and_upsert_replaces_overlapping_sessions(tmp_path: Path) -> None:
    root = tmp_path / "store"
    first = _write(
        tmp_path / "a.csv",
        HEADER + "AAA,2024-01-02,10,11,9,10,100\nAAA,2024-01-03,10,11,9,10.5,100\n"
        "BBB,2024-01-02,5,6,4,5,50\n",
    )
    second = _write(
        tmp_path / "b.csv",
        HEADER + "aaa,2024-01-03,10,12,9,11,200\nAAA,2024-01-04,11,12,10,12,300\n",
    )
    import_files(root, [first])
    summary = import_files(root, [second])
    assert summary.tickers == ["AAA"] and summary.rows == 2
    frame = MarketData(root).load(["AAA", "BBB"], None, None).frame
    aaa = frame[frame["ticker"] == "AAA"]
    assert aaa["date"].dt.strftime("%Y-%m-%d").tolist() == [
        "2024-01-02",
        "2024-01-03",
        "2024-01-04",
    ]
    assert aaa["close"].tolist() == [10.0, 11.0, 12.0]
    assert aaa["volume"].tolist() == [100.0, 200.0, 300.0]
    assert frame[frame["ticker"] == "BBB"]["close"].tolist() == [5.0]


def test_yahoo_files_take_ticker_from_name_or_option(tmp_path: Path) -> None:
    root = tmp_path / "store"
    rows = "2024-01-02,100,110,90,100,50,1000\n2024-01-03,100,110,90,104,52,1000\n"
    import_files(root, [_write(tmp_path / "BRK.B.csv", YAHOO + rows)])
    import_files(root, [_write(tmp_path / "whatever.csv", YAHOO + rows)], ticker="msft")
    market = MarketData(root)
    assert market.tickers() == ["BRK.B", "MSFT"]
    frame = market.load(["BRK.B"], None, None).frame
    assert frame["adj_factor"].tolist() == [0.5, 0.5]
    assert frame["close"].tolist() == [50.0, 52.0]


def test_parquet_long_format(tmp_path: Path) -> None:
    path = tmp_path / "bars.parquet"
    pd.DataFrame(
        {
            "ticker": ["ZZZ", "ZZZ"],
            "date": pd.to_datetime(["2024-01-02", "2024-01-03"]),
            "open": [1.0, 2.0], "high": [2.0, 3.0], "low": [0.5, 1.5], "close": [1.5, 2.5],
            "volume": [10, 20], "adj_close": [1.5, 2.5],
        }
    ).to_parquet(path)  # fmt: skip
    import_files(tmp_path / "store", [path])
    assert MarketData(tmp_path / "store").entries()["ZZZ"].rows == 2


@pytest.mark.parametrize(
    ("body", "line", "reason"),
    [
        (
            "ticker,date,open,high,low,close\nAAA,2024-01-02,1,2,1,1\n",
            None,
            "missing column(s) volume",
        ),
        (HEADER + "AAA,2024-01-02,1,2,1,1,1\nAAA,02/01/2024x,1,2,1,1,1\n", 3, "date '02/01/2024x' is not a date"),  # noqa: E501
        (HEADER + "AAA,2024-01-02,1,2,1,1,1\nAAA,2024-01-03,,2,1,1,1\n", 3, "open is '': expected a positive"),  # noqa: E501
        (HEADER + "AAA,2024-01-02,1,2,1,nan,1\n", 2, "close is 'nan': expected a positive"),
        (HEADER + "AAA,2024-01-02,1,2,1,0,1\n", 2, "close is '0': expected a positive"),
        (HEADER + "AAA,2024-01-02,1,2,1,-3,1\n", 2, "close is '-3': expected a positive"),
        (HEADER + "AAA,2024-01-02,1,1,2,1,1\n", 2, "high 1 is below low 2"),
        (HEADER + "AAA,2024-01-02,1,2,1,1,-5\n", 2, "volume is '-5': expected a number of at least 0"),  # noqa: E501
        (HEADER + "AAA,2024-01-02,1,2,1,1,1\nAAA,2024-01-02,1,2,1,1,1\n", 3, "duplicate session: the same ticker and date appear on line 2"),  # noqa: E501
        (HEADER + "AAA,2024-01-02,1,2,1,1,1\n\nAAA,2024-01-03,1,2,x,1,1\n", 4, "low is 'x'"),
        (HEADER, None, "no data rows"),
        ("", None, "the file is empty"),
        (HEADER + "SYN0001,2024-01-02,1,2,1,1,1\n", 2, "reserved for synthetic"),
    ],
)  # fmt: skip
def test_bad_input_is_rejected_with_file_row_and_reason(
    tmp_path: Path, body: str, line: int | None, reason: str
) -> None:
    path = _write(tmp_path / "bad.csv", body)
    with pytest.raises(ImportRejected) as exc:
        import_files(tmp_path / "store", [path])
    problems = _reasons(exc)
    assert any(f == str(path) and r == line and reason in why for f, r, why in problems), problems
    assert not (tmp_path / "store" / "manifest.json").exists()


def test_duplicates_across_files_name_both(tmp_path: Path) -> None:
    one = _write(tmp_path / "one.csv", HEADER + "AAA,2024-01-02,1,2,1,1,1\n")
    two = _write(
        tmp_path / "two.csv", HEADER + "AAA,2024-01-03,1,2,1,1,1\nAAA,2024-01-02,1,2,1,1,1\n"
    )
    with pytest.raises(ImportRejected) as exc:
        import_files(tmp_path / "store", [one, two])
    ((file, line, reason),) = _reasons(exc)
    assert (file, line) == (str(two), 3) and f"{one} line 2" in reason


def test_a_bad_second_file_leaves_the_store_unchanged(tmp_path: Path) -> None:
    root = tmp_path / "store"
    import_files(root, [_write(tmp_path / "base.csv", HEADER + "AAA,2024-01-02,1,2,1,1,1\n")])
    before = _snapshot(root)
    good = _write(
        tmp_path / "good.csv", HEADER + "AAA,2024-01-03,1,2,1,1,1\nNEW,2024-01-03,1,2,1,1,1\n"
    )
    bad = _write(
        tmp_path / "bad.csv", HEADER + "BBB,2024-01-03,1,2,1,1,1\nBBB,not-a-date,1,2,1,1,1\n"
    )
    with pytest.raises(ImportRejected):
        import_files(root, [good, bad])
    assert _snapshot(root) == before
    assert MarketData(root).tickers() == ["AAA"]


def test_a_failure_while_committing_leaves_the_store_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "store"
    import_files(root, [_write(tmp_path / "base.csv", HEADER + "AAA,2024-01-02,1,2,1,1,1\n")])
    before = _snapshot(root)

    def crash(self: Store, manifest: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(Store, "_write_manifest", crash)
    more = _write(tmp_path / "more.csv", HEADER + "AAA,2024-01-03,1,2,1,1,1\n")
    with pytest.raises(OSError, match="disk full"):
        import_files(root, [more])
    assert _snapshot(root) == before
    monkeypatch.undo()
    assert MarketData(root).entries()["AAA"].rows == 1


def test_rewrites_compact_superseded_rows(tmp_path: Path) -> None:
    root = tmp_path / "store"
    for day in range(2, 8):
        body = HEADER + f"AAA,2024-01-0{day},1,2,1,{day},1\nBBB,2024-01-0{day},1,2,1,1,1\n"
        import_files(root, [_write(tmp_path / f"d{day}.csv", body)])
        import_files(
            root, [_write(tmp_path / f"a{day}.csv", HEADER + f"AAA,2024-01-0{day},1,2,1,3,1\n")]
        )
    files = list((root / "bars").glob("*.parquet"))
    assert 1 <= len(files) <= 2
    assert not list(root.glob(".tmp-*"))
    entries = MarketData(root).entries()
    assert entries["AAA"].rows == 6 and entries["BBB"].rows == 6


def test_yfinance_offsets_that_change_with_daylight_saving_are_local_sessions(
    tmp_path: Path,
) -> None:
    # yfinance writes each bar at local midnight with its UTC offset: -04:00 in
    # summer, -05:00 in winter, in one file.
    body = (
        YAHOO
        + "2011-11-04 00:00:00-04:00,10,11,9,10.5,10.5,100\n"
        + "2011-11-07 00:00:00-05:00,10,11,9,10.6,10.6,100\n"
        + "2012-03-09 00:00:00-05:00,10,11,9,10.7,10.7,100\n"
        + "2012-03-12 00:00:00-04:00,10,11,9,10.8,10.8,100\n"
    )
    root = tmp_path / "store"
    summary = import_files(root, [_write(tmp_path / "SPY.csv", body)])
    assert summary.rows == 4
    frame = MarketData(root).load(["SPY"], None, None).frame
    assert frame["date"].dt.strftime("%Y-%m-%d").tolist() == [
        "2011-11-04",
        "2011-11-07",
        "2012-03-09",
        "2012-03-12",
    ]


def test_iso_timestamps_with_z_or_a_time_are_their_written_date(tmp_path: Path) -> None:
    body = (
        HEADER + "AAA,2024-01-02T00:00:00Z,1,2,1,1,1\nAAA,2024-01-03 16:00,1,2,1,1,1\n"
        "AAA,2024-01-04T09:30:00.5+0100,1,2,1,1,1\n"
    )
    import_files(tmp_path / "store", [_write(tmp_path / "a.csv", body)])
    assert str(MarketData(tmp_path / "store").entries()["AAA"].last) == "2024-01-04"


def test_slash_dates_are_refused_alike_unless_a_format_names_them(tmp_path: Path) -> None:
    body = HEADER + "AAA,2013/03/05,1,2,1,1,1\nAAA,03/01/2013,1,2,1,1,1\n"
    path = _write(tmp_path / "mixed.csv", body)
    with pytest.raises(ImportRejected) as exc:
        import_files(tmp_path / "store", [path])
    problems = _reasons(exc)
    assert [(line, why.split(" is not")[0]) for _, line, why in problems] == [
        (2, "date '2013/03/05'"),
        (3, "date '03/01/2013'"),
    ]
    hints = {why.split(" is not a date; ")[1] for _, _, why in problems}
    assert hints == {
        "write dates as YYYY-MM-DD, or name the file's format with --date-format "
        "(e.g. --date-format %m/%d/%Y)"
    }, "both spellings get the same message"
    with pytest.raises(ImportRejected) as exc:
        import_files(tmp_path / "store", [path], date_format="%m/%d/%Y")
    ((_, line, why),) = _reasons(exc)
    assert line == 2
    assert why == "date '2013/03/05' is not a date; it does not match --date-format %m/%d/%Y"
    ok = _write(
        tmp_path / "us.csv", HEADER + "AAA,03/01/2013,1,2,1,1,1\nAAA,03/04/2013,1,2,1,1,1\n"
    )
    import_files(tmp_path / "store", [ok], date_format="%m/%d/%Y")
    entries = MarketData(tmp_path / "store").entries()["AAA"]
    assert (str(entries.first), str(entries.last)) == ("2013-03-01", "2013-03-04")


def test_a_file_name_that_is_not_a_ticker_gives_one_hint(tmp_path: Path) -> None:
    rows = "".join(f"2024-01-{d:02d},1,2,1,1,1,1\n" for d in range(2, 30))
    path = _write(tmp_path / "prices from yahoo.csv", YAHOO + rows)
    with pytest.raises(ImportRejected) as exc:
        import_files(tmp_path / "store", [path])
    ((file, line, why),) = _reasons(exc)
    assert (file, line) == (str(path), None)
    assert "the file name does not name a ticker" in why and "--ticker" in why
    import_files(tmp_path / "store", [path], ticker="SPY")
    assert MarketData(tmp_path / "store").entries()["SPY"].rows == 28


def test_skip_bad_rows_stores_the_good_ones_and_lists_the_rest(tmp_path: Path) -> None:
    root = tmp_path / "store"
    body = (
        HEADER
        + "AAA,2024-01-02,1,2,1,1,1\n"
        + "AAA,2024-01-03,1,2,1,nan,1\n"
        + "AAA,2024-01-04,1,2,1,1,1\n"
        + "AAA,2024-01-04,1,2,1,1,1\n"
        + "BBB,2024-01-02,1,1,2,1,1\n"
        + "BBB,2024-01-03,1,2,1,1,1\n"
    )
    path = _write(tmp_path / "mixed.csv", body)
    summary = import_files(root, [path], skip_bad_rows=True)
    assert (summary.rows, summary.tickers) == (3, ["AAA", "BBB"])
    assert [(line, why.split(":")[0]) for _, line, why in summary.skipped] == [
        (3, "close is 'nan'"),
        (5, "duplicate session"),
        (6, "high 1 is below low 2"),
    ]
    entries = MarketData(root).entries()
    assert (entries["AAA"].rows, entries["BBB"].rows) == (2, 1)
    # A file that cannot be read is not a row to skip: the import is still refused whole.
    before = _snapshot(root)
    broken = _write(tmp_path / "nocols.csv", "ticker,date\nAAA,2024-01-05\n")
    more = _write(tmp_path / "more.csv", HEADER + "CCC,2024-01-05,1,2,1,1,1\n")
    with pytest.raises(ImportRejected):
        import_files(root, [more, broken], skip_bad_rows=True)
    assert _snapshot(root) == before


def test_skip_bad_rows_with_only_bad_rows_stores_nothing(tmp_path: Path) -> None:
    path = _write(tmp_path / "bad.csv", HEADER + "AAA,2024-01-02,1,2,1,-1,1\n")
    with pytest.raises(ImportRejected, match="no row can be stored"):
        import_files(tmp_path / "store", [path], skip_bad_rows=True)
    assert not (tmp_path / "store" / "manifest.json").exists()


def test_rows_with_an_invalid_ticker_are_rows_to_skip(tmp_path: Path) -> None:
    body = HEADER + "AAA,2024-01-02,1,2,1,1,1\nSYN0001,2024-01-02,1,2,1,1,1\n"
    path = _write(tmp_path / "t.csv", body)
    summary = import_files(tmp_path / "store", [path], skip_bad_rows=True)
    assert summary.tickers == ["AAA"]
    ((_, line, why),) = summary.skipped
    assert line == 3 and "reserved for synthetic" in why


def test_sessions_before_1970_sort_first(tmp_path: Path) -> None:
    root = tmp_path / "store"
    body = HEADER + "IBM,1970-01-02,1,2,1,1,1\nIBM,1962-01-02,1,2,1,2,1\nIBM,1969-12-31,1,2,1,3,1\n"
    import_files(root, [_write(tmp_path / "old.csv", body)])
    more = HEADER + "IBM,1962-01-03,1,2,1,4,1\nIBM,1969-12-31,1,2,1,5,1\n"
    import_files(root, [_write(tmp_path / "more.csv", more)])
    frame = MarketData(root).load(["IBM"], None, None).frame
    assert frame["date"].dt.strftime("%Y-%m-%d").tolist() == [
        "1962-01-02",
        "1962-01-03",
        "1969-12-31",
        "1970-01-02",
    ]
    assert frame["close"].tolist() == [2.0, 4.0, 5.0, 1.0]
