"""Every module the public pandas/numpy/datetime/statistics code imports lazily is preloaded.

The installed sources are scanned for imports inside function bodies (the
lazy ones); after :func:`preload` each must be loaded, not installed at all,
or listed in ``preload.NOT_PROVIDED`` with its reason. A new pandas or numpy
release that adds a lazy import fails here first.
"""

from __future__ import annotations

import ast
import datetime
import importlib.util
import math
import os
import re
import statistics
import sys
from pathlib import Path

import numpy
import pandas
import pytest

from strategyq.sandbox import preload

# Only a file with an indented import statement can hold a lazy one: the others are not
# parsed (about a third of the numpy and pandas sources).
_INDENTED_IMPORT = re.compile(r"^[ \t]+(?:import|from)[ \t]", re.MULTILINE)


class _LazyImports(ast.NodeVisitor):
    """The modules imported inside function bodies, in one walk of each tree."""

    def __init__(self) -> None:
        self.found: set[str] = set()
        self._depth = 0

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self._depth += 1
        self.generic_visit(node)
        self._depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Import(self, node: ast.Import) -> None:
        if self._depth:
            self.found.update(alias.name for alias in node.names)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if self._depth and node.level == 0 and node.module:
            self.found.add(node.module)


def _lazy_imports(files: list[Path]) -> set[str]:
    visitor = _LazyImports()
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
            if _INDENTED_IMPORT.search(text):
                visitor.visit(ast.parse(text))
        except (SyntaxError, UnicodeDecodeError):
            continue
    return visitor.found


def _sources() -> list[Path]:
    files: list[Path] = []
    for package in (numpy, pandas):
        for root, _dirs, names in os.walk(Path(package.__path__[0])):
            if f"{os.sep}tests" in root:
                continue
            files += [Path(root) / n for n in names if n.endswith(".py")]
    files += [Path(m.__file__) for m in (datetime, statistics) if m.__file__]
    return files


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


@pytest.fixture(scope="module")
def loaded() -> set[str]:
    preload.preload()
    return set(sys.modules)


def test_every_lazy_import_is_preloaded_or_refused_on_purpose(loaded: set[str]) -> None:
    missing = sorted(
        name
        for name in _lazy_imports(_sources())
        if name not in loaded
        and name not in preload.NOT_PROVIDED
        and not preload._skipped(name)
        and _installed(name)
        and not name.startswith(("numpy.distutils", "distutils"))
    )
    assert missing == [], f"add to preload.STDLIB_LAZY or NOT_PROVIDED: {missing}"


def test_c_level_lazy_imports_are_preloaded(loaded: set[str]) -> None:
    assert {"_strptime", "time", "calendar", "locale", "zoneinfo"} <= loaded
    assert {"pandas.core.reshape.pivot", "pandas.core.reshape.melt", "numpy.fft"} <= loaded
    assert math.__name__ in loaded


def test_pinned_versions_are_the_ones_installed() -> None:
    # docs/security.md names the versions strategies run on; pyproject pins the range.
    assert pandas.__version__.split(".")[0] == "3"
    assert numpy.__version__.split(".")[0] == "2"
