"""Symbol lists as people write them (@FILE, all) and the nearest stored names."""

from __future__ import annotations

from pathlib import Path

import pytest

from strategyq.data import write_synthetic
from strategyq.data.symbols import did_you_mean, expand_symbols
from strategyq.errors import TaskValidationError


def test_lists_files_and_all(tmp_path: Path) -> None:
    store = tmp_path / "data"
    write_synthetic(store, 3, 0.1, 1)
    lines = tmp_path / "universe.txt"
    lines.write_text("# my universe\nAAPL\n\nmsft  # software\nAAPL\n")
    table = tmp_path / "sp.csv"
    table.write_text("Name,Symbol,Sector\nApple,AAPL,Tech\nIBM,IBM,Tech\n")
    assert expand_symbols("AAPL, MSFT", store) == ["AAPL", "MSFT"]
    assert expand_symbols(["AAPL", "IBM"], store) == ["AAPL", "IBM"]
    assert expand_symbols(f"@{lines}", store) == ["AAPL", "msft"]
    assert expand_symbols(f"@{table}", store) == ["AAPL", "IBM"]
    assert expand_symbols("all", store) == ["SYN0001", "SYN0002", "SYN0003"]
    assert expand_symbols("ALL", store) == ["SYN0001", "SYN0002", "SYN0003"]


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("Name,Sector\nApple,Tech\n", "has no ticker column (its header: Name, Sector)"),
        ("# nothing\n\n", "names no ticker"),
    ],
)
def test_unusable_symbol_files_say_what_to_write(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "u.csv"
    path.write_text(text)
    with pytest.raises(TaskValidationError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        expand_symbols(f"@{path}", tmp_path)
    with pytest.raises(TaskValidationError, match="cannot read the symbol file"):
        expand_symbols(f"@{tmp_path / 'missing.txt'}", tmp_path)
    with pytest.raises(TaskValidationError, match=r"store at .* is empty"):
        expand_symbols("all", tmp_path / "empty")


def test_did_you_mean_names_the_nearest_stored_tickers() -> None:
    stored = ["AAPL", "MSFT", "GOOG", "IBM", "FB"]
    assert did_you_mean(["APPL", "MSTF", "ZZZZZZ"], stored) == "APPL → AAPL; MSTF → MSFT"
    assert did_you_mean(["goog"], stored) == "goog → GOOG"
