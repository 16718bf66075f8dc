"""What ``strategyq.backtest`` sends as the strategy: source strings, paths, functions, classes."""

from __future__ import annotations

import linecache
from pathlib import Path

import pytest

from strategyq.errors import TaskValidationError
from strategyq.local import strategy_source


def gap_up(df):  # type: ignore[no-untyped-def]
    return df[df.gap_pct > 3]


def test_strings_paths_and_functions(tmp_path: Path) -> None:
    path = tmp_path / "s.py"
    path.write_text("def f(df):\n    return []\n")
    assert strategy_source("def f(df):\n    return []\n") == "def f(df):\n    return []\n"
    assert strategy_source(path) == path.read_text()
    assert strategy_source(str(path)) == path.read_text()
    assert strategy_source(gap_up).startswith("def gap_up(df):")
    with pytest.raises(TaskValidationError, match="cannot read the strategy file"):
        strategy_source(str(tmp_path / "missing.py"))
    with pytest.raises(TaskValidationError, match="source string, a path"):
        strategy_source(42)  # type: ignore[arg-type]


def test_a_class_defined_in_a_notebook_cell() -> None:
    # What a Jupyter kernel does with a cell: compile it under a name of its own, keep its
    # lines in linecache, and run it in __main__ (which has no file to read a class from).
    cell = (
        "import math\n\n"
        "class Breakout:\n"
        "    window = 20\n\n"
        "    def __call__(self, df):\n"
        "        return df[df.close > df.close.rolling(self.window).max().shift()]\n\n"
        "x = 1\n"
    )
    name = "/tmp/ipykernel_0/123456.py"
    linecache.cache[name] = (len(cell), None, cell.splitlines(keepends=True), name)
    scope: dict[str, object] = {"__name__": "__main__"}
    try:
        exec(compile(cell, name, "exec"), scope)
        source = strategy_source(scope["Breakout"])  # type: ignore[arg-type]
    finally:
        del linecache.cache[name]
    assert source.startswith("class Breakout:\n") and "rolling(self.window)" in source
    assert "x = 1" not in source and "import math" not in source


def test_a_function_from_a_notebook_cell_brings_the_cells_definitions() -> None:
    # A class-based strategy in one cell: the entry function, the class it uses, the
    # cell's imports and constants; not the cell's other statements (a run, a plot).
    cell = (
        "import math\n"
        "WINDOW = 20\n\n"
        "class Breakout:\n"
        "    def __init__(self, window):\n"
        "        self.window = window\n\n"
        "    def run(self, df):\n"
        "        return df[df.close > df.close.rolling(self.window).max().shift()]\n\n"
        "def breakout(df, params):\n"
        "    return Breakout(params.get('window', WINDOW)).run(df)\n\n"
        "result = breakout\n"
        "print(result)\n"
    )
    name = "/tmp/ipykernel_0/654321.py"
    linecache.cache[name] = (len(cell), None, cell.splitlines(keepends=True), name)
    scope: dict[str, object] = {"__name__": "__main__"}
    try:
        exec(compile(cell, name, "exec"), scope)
        source = strategy_source(scope["breakout"])  # type: ignore[arg-type]
    finally:
        del linecache.cache[name]
    assert "import math" in source and "WINDOW = 20" in source
    assert "class Breakout:" in source and "def breakout(df, params):" in source
    assert "print(" not in source and "result = breakout" not in source
    compile(source, "<strategy>", "exec")
