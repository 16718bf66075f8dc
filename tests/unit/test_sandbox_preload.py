"""Every module the public pandas/numpy/datetime/statistics code imports lazily is preloaded.

The installed sources are scanned for imports inside function bodies (the
lazy ones); after :func:`preload` each must be loaded, not installed at all,
or listed in ``preload.NOT_PROVIDED`` with its reason. A new pandas or numpy
release that adds a lazy import fails here first.
"""

from __future__ import annotations

import datetime
import dis
import importlib.machinery
import importlib.util
import inspect
import math
import os
import statistics
import sys
from pathlib import Path
from types import CodeType

import numpy
import pandas
import pytest

from strategyq.sandbox import preload

_IMPORT_NAME = dis.opmap["IMPORT_NAME"]


def _lazy_imports_of(code: CodeType, in_function: bool, found: set[str]) -> None:
    """Add the absolute imports made inside function bodies in ``code`` and its nested code.

    An import statement compiles to ``LOAD_CONST level; LOAD_CONST fromlist;
    IMPORT_NAME module``; a function's code (comprehensions, lambdas and generators
    included) is the code flagged ``CO_OPTIMIZED``, and a class body nested in a function
    is still inside one.
    """
    in_function = in_function or bool(code.co_flags & inspect.CO_OPTIMIZED)
    # Opcodes sit at even offsets: one bytes search skips the code with no import at all.
    if in_function and _IMPORT_NAME in code.co_code[::2]:
        before: list[dis.Instruction] = []
        for instruction in dis.get_instructions(code):
            if instruction.opcode == _IMPORT_NAME and before[-2].argval == 0:
                found.add(instruction.argval)
            if instruction.opname != "EXTENDED_ARG":
                before.append(instruction)
    for constant in code.co_consts:
        if isinstance(constant, CodeType):
            _lazy_imports_of(constant, in_function, found)


def _lazy_imports(files: list[Path]) -> set[str]:
    """The modules imported inside function bodies of ``files``.

    Read from each file's compiled code, as the interpreter's own loader gets it (the
    bytecode cache when it matches the source, else compiled from the source), rather
    than from a syntax tree of the source: the same imports in an eighth of the time.
    """
    found: set[str] = set()
    for path in files:
        try:
            code = importlib.machinery.SourceFileLoader(path.stem, str(path)).get_code(path.stem)
        except (SyntaxError, UnicodeDecodeError):
            continue
        if code is not None:
            _lazy_imports_of(code, False, found)
    return found


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


def test_the_scan_finds_the_imports_made_inside_functions_only(tmp_path: Path) -> None:
    source = tmp_path / "lazy.py"
    source.write_text(
        "import top_level\n"
        "from top.level import name\n"
        "if top_level:\n"
        "    import top_level_branch\n"
        "class Body:\n"
        "    import in_a_class_body\n"
        "    def method(self):\n"
        "        from in_a.method import name\n"
        "def function():\n"
        "    import in_a.function as alias\n"
        "    from . import relative\n"
        "    from .sibling import relative\n"
        "    class Nested:\n"
        "        import in_a_class_in_a_function\n"
        "    def inner():\n"
        # More than 256 names before it: the import's operand needs an EXTENDED_ARG.
        "        " + "; ".join(f"g{i}" for i in range(300)) + "; import after_extended_args\n"
        "    return [__import__('not_a_statement') for _ in ()]\n"
        "async def coroutine():\n"
        "    import in_a_coroutine\n"
    )
    assert _lazy_imports([source]) == {
        "in_a.method",
        "in_a.function",
        "in_a_class_in_a_function",
        "after_extended_args",
        "in_a_coroutine",
    }


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
