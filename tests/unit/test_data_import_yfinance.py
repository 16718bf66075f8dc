"""yfinance's own layouts: the three-row CSV header and the downloaded DataFrame.

The files are written the way yfinance writes them: ``yf.download`` returns a frame
whose columns are a ``MultiIndex`` named ``(Price, Ticker)`` (``(Ticker, Price)``
with ``group_by="ticker"``) and whose index is a ``DatetimeIndex`` named ``Date``;
``DataFrame.to_csv`` then writes the ``Price`` / ``Ticker`` / ``Date`` header rows.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from strategyq.data import MarketData, import_files
from strategyq.data.importer import import_frame
from strategyq.errors import ImportRejected

SESSIONS = pd.DatetimeIndex(pd.bdate_range("2024-01-02", periods=6), name="Date")


def _bars(seed: int, adjusted: bool) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    close = 100 + np.cumsum(rng.normal(0, 1, len(SESSIONS)))
    open_ = close + rng.normal(0, 0.5, len(SESSIONS))
    high = np.maximum(open_, close) + 1
    low = np.minimum(open_, close) - 1
    fields = {"Close": close, "High": high, "Low": low, "Open": open_,
              "Volume": rng.integers(1_000, 9_000, len(SESSIONS)).astype(np.int64)}  # fmt: skip
    if not adjusted:
        fields = {"Adj Close": close * 0.98, **fields}
    return fields


def download(
    tickers: list[str], *, auto_adjust: bool = True, group_by: str = "column"
) -> pd.DataFrame:
    """A frame shaped as ``yf.download(tickers, auto_adjust=..., group_by=...)`` returns it."""
    per = {t: _bars(i, auto_adjust) for i, t in enumerate(tickers)}
    prices = list(per[tickers[0]])
    if group_by == "ticker":
        columns = pd.MultiIndex.from_product([tickers, prices], names=["Ticker", "Price"])
        data = {(t, p): per[t][p] for t in tickers for p in prices}
    else:
        columns = pd.MultiIndex.from_product([prices, tickers], names=["Price", "Ticker"])
        data = {(p, t): per[t][p] for p in prices for t in tickers}
    return pd.DataFrame(data, index=SESSIONS, columns=columns)


def stored(root: Path, tickers: list[str]) -> pd.DataFrame:
    frame = MarketData(root).load(tickers, None, None, adjusted=False, warmup_sessions=0).frame
    return frame.set_index(["ticker", "date"])


def test_single_ticker_csv_with_the_three_row_header(tmp_path: Path) -> None:
    frame = download(["NVDA"])
    path = tmp_path / "NVDA.csv"
    frame.to_csv(path)
    lines = path.read_text().splitlines()
    assert lines[0].startswith("Price,Close,High,Low,Open,Volume")
    assert lines[1].startswith("Ticker,NVDA") and lines[2].startswith("Date,")
    summary = import_files(tmp_path / "store", [path])
    assert summary.tickers == ["NVDA"] and summary.rows == len(SESSIONS)
    got = stored(tmp_path / "store", ["NVDA"]).loc["NVDA"]
    np.testing.assert_allclose(got["close"].to_numpy(), frame[("Close", "NVDA")].to_numpy())
    np.testing.assert_allclose(got["volume"].to_numpy(), frame[("Volume", "NVDA")].to_numpy())


@pytest.mark.parametrize("group_by", ["column", "ticker"])
def test_multi_ticker_csv_without_auto_adjust_and_a_late_listing(
    tmp_path: Path, group_by: str
) -> None:
    frame = download(["AAPL", "MSFT", "FB"], auto_adjust=False, group_by=group_by)
    # FB was not listed yet on the first two sessions: yfinance leaves its cells empty.
    fb = [c for c in frame.columns if "FB" in c]
    frame.loc[SESSIONS[:2], fb] = np.nan
    path = tmp_path / "download.csv"
    frame.to_csv(path)
    summary = import_files(tmp_path / "store", [path])
    assert summary.tickers == ["AAPL", "FB", "MSFT"]
    assert summary.rows == 3 * len(SESSIONS) - 2
    got = stored(tmp_path / "store", ["AAPL", "FB"])
    aapl = frame.xs("AAPL", axis=1, level="Ticker")
    np.testing.assert_allclose(got.loc["AAPL"]["close"].to_numpy(), aapl["Close"].to_numpy())
    # Adj Close became the adjustment factor: adjusted close = close x factor.
    np.testing.assert_allclose(got.loc["AAPL"]["adj_factor"].to_numpy(), 0.98)
    assert len(got.loc["FB"]) == len(SESSIONS) - 2


def test_a_bad_row_names_its_line_in_the_file(tmp_path: Path) -> None:
    frame = download(["AAPL", "MSFT"])
    frame.loc[SESSIONS[3], ("High", "MSFT")] = 1.0  # below its low
    path = tmp_path / "bad.csv"
    frame.to_csv(path)
    with pytest.raises(ImportRejected) as info:
        import_files(tmp_path / "store", [path])
    ((source, line, reason),) = info.value.problems
    # Three header rows, then the sessions: the fourth session is on line 7.
    assert (source, line) == (str(path), 7) and "high 1 is below low" in reason
    assert path.read_text().splitlines()[6].startswith(str(SESSIONS[3].date()))


@pytest.mark.parametrize("group_by", ["column", "ticker"])
def test_a_downloaded_frame_imports_directly(tmp_path: Path, group_by: str) -> None:
    frame = download(["AAPL", "MSFT"], auto_adjust=False, group_by=group_by)
    summary = import_frame(tmp_path / "store", frame)
    assert summary.tickers == ["AAPL", "MSFT"] and summary.rows == 2 * len(SESSIONS)
    got = stored(tmp_path / "store", ["MSFT"]).loc["MSFT"]
    msft = frame.xs("MSFT", axis=1, level="Ticker")
    np.testing.assert_allclose(got["open"].to_numpy(), msft["Open"].to_numpy())


def test_a_history_frame_needs_its_ticker(tmp_path: Path) -> None:
    # yf.Ticker("IBM").history(): one level of columns, a time-zone-aware index.
    bars = download(["IBM"]).xs("IBM", axis=1, level="Ticker")
    bars.index = bars.index.tz_localize("America/New_York")
    bars["Dividends"] = 0.0
    with pytest.raises(ImportRejected, match="ticker"):
        import_frame(tmp_path / "store", bars)
    assert import_frame(tmp_path / "store", bars, "IBM").rows == len(SESSIONS)
    got = stored(tmp_path / "store", ["IBM"]).loc["IBM"]
    assert [d.date() for d in got.index] == [d.date() for d in SESSIONS]


def test_a_frame_with_other_levels_is_refused_with_what_to_pass(tmp_path: Path) -> None:
    odd = pd.DataFrame([[1.0, 2.0]], columns=pd.MultiIndex.from_tuples([("a", "x"), ("b", "y")]))
    with pytest.raises(ImportRejected) as info:
        import_frame(tmp_path / "store", odd)
    assert "yfinance" in str(info.value.problems)


def test_the_top_level_function_fills_the_environments_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import strategyq

    monkeypatch.setenv("STRATEGYQ_HOME", str(tmp_path))
    summary = strategyq.import_frame(download(["AAPL", "MSFT"]))
    assert summary.tickers == ["AAPL", "MSFT"]
    assert MarketData(tmp_path / "data").tickers() == ["AAPL", "MSFT"]
