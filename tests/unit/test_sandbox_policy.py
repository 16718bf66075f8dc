"""The policy check: messages with rule and line, entry-point choice, format handling."""

from __future__ import annotations

import pytest

from strategyq.errors import ModuleUnavailable, PolicyError, StrategySyntaxError
from strategyq.sandbox import check_policy


def _refused(code: str) -> str:
    with pytest.raises(PolicyError) as info:
        check_policy(code)
    message = str(info.value)
    assert message.startswith("Security validation failed: ")
    return message


def test_import_message_names_module_line_and_fix() -> None:
    code = "import pandas as pd\n\nimport os\ndef s(df):\n    return []\n"
    message = _refused(code)
    assert message.startswith("Security validation failed: line 3: module 'os' is refused")
    assert "return rows" in message


@pytest.mark.parametrize(
    ("snippet", "fragment"),
    [
        ("eval('1')", "'eval' is not available"),
        ("exec('1')", "'exec' is not available"),
        ("compile('1', 's', 'exec')", "'compile' is not available"),
        ("open('/etc/passwd')", "ask for the data to be imported"),
        ("__import__('os')", "'__import__' reaches the interpreter's internals"),
        ("vars()", "vars() without an argument"),
        ("breakpoint()", "'breakpoint' is not available"),
        ("input()", "'input' is not available"),
        ("df.__class__", "'.__class__' reaches the interpreter's internals"),
        ("len.__self__", "'.__self__' reaches"),
        ("pd.read_csv('x')", "pass small tables in `params`"),
        ("pd.read_csv(f'{x}.csv')", "'read_csv' with a path reads a file"),
        ("df.to_csv('x')", "'to_csv' with a path writes a file"),
        ("pd.read_pickle('x')", "'read_pickle' reads or writes files"),
        ("pd.read_parquet(x)", "'read_parquet' reads or writes files"),
        ("np.load('x')", "'load' with a path reads a file"),
        ("np.fromfile('x')", "'fromfile' reads or writes files"),
        ("np.memmap('x')", "'memmap' reads or writes files"),
        ("np.save('x', df)", "'save' with a path writes a file"),
        ("np.savez('x', df)", "'savez' reads or writes files"),
        ("df.values.tofile('x')", "'tofile' reads or writes files"),
        ("df.plot()", "matplotlib"),
        ("np.ctypeslib", "'.ctypeslib' reaches a module that is off limits"),
        ("'{0.__class__}'.format(df)", "names '__class__'"),
        ("'__globals__'", "names '__globals__'"),
        ("df.apply('__class__')", "names '__class__'"),
    ],
)
def test_refused_expressions(snippet: str, fragment: str) -> None:
    message = _refused(f"def s(df):\n    x = 1\n    return {snippet}\n")
    assert fragment in message, message
    assert "line 3: " in message


@pytest.mark.parametrize(
    ("code", "fragment"),
    [
        ("from pandas import read_pickle\ndef s(df):\n    return []\n", "'read_pickle'"),
        ("from os import path\ndef s(df):\n    return []\n", "module 'os' is refused"),
        ("from . import x\ndef s(df):\n    return []\n", "relative imports"),
        ("from math import *\ndef s(df):\n    return []\n", "star imports"),
        ("import numpy.ctypeslib\ndef s(df):\n    return []\n", "'numpy.ctypeslib'"),
        ("import pandas._libs\ndef s(df):\n    return []\n", "private part of pandas"),
        ("import sys\ndef s(df):\n    return []\n", "module 'sys' is refused"),
        ("import subprocess\ndef s(df):\n    return []\n", "module 'subprocess' is refused"),
        ("import socket\ndef s(df):\n    return []\n", "no network"),
        ("import gc\ndef s(df):\n    return []\n", "interpreter's internals"),
        ("import importlib\ndef s(df):\n    return []\n", "interpreter's internals"),
        ("import ctypes\ndef s(df):\n    return []\n", "interpreter's internals"),
        ("async def s(df):\n    return []\n", "event loop"),
        ("def s(df):\n    return __\uff49mport__\n", "'__import__' reaches"),
        ("def s(df):\n    match df:\n        case str(__class__=c):\n            return []\n",
         "'__class__'"),
        ("", "empty"),
    ],
)  # fmt: skip
def test_refused_programs(code: str, fragment: str) -> None:
    assert fragment in _refused(code)


@pytest.mark.parametrize(
    ("code", "fix"),
    [
        ("import pandas_datareader\ndef s(df):\n    return []\n", "the market data is in `df`"),
        ("import pandas_ta\ndef s(df):\n    return []\n", "`talib`"),
        ("import numpyy\ndef s(df):\n    return []\n", "did you mean `numpy`?"),
        ("import backtesting\ndef s(df):\n    return []\n", "strategyq is the backtester"),
    ],
)
def test_unknown_modules_are_unavailable_with_the_nearest_alternative(code: str, fix: str) -> None:
    with pytest.raises(ModuleUnavailable) as info:
        check_policy(code)
    assert info.value.error_type == "module_unavailable"
    assert "line 1: the sandbox does not provide module" in str(info.value)
    assert fix in str(info.value)


def test_every_finding_is_reported_at_once() -> None:
    code = (
        "import os\nimport requests\nimport pandas_ta\n"
        "def strategy(df):\n"
        "    x = pd.read_csv('data.csv')\n"
        "    y = ().__class__.__subclasses__()\n"
        "    eval('1')\n"
        "    return []\n"
    )
    with pytest.raises(PolicyError) as info:
        check_policy(code)
    lines = [f["line"] for f in info.value.findings]
    assert lines == [1, 2, 3, 5, 6, 6, 7]
    assert str(info.value).startswith("Security validation failed: 7 findings:\nline 1: ")
    assert all(f["fix"] for f in info.value.findings)


def test_a_syntax_error_is_a_syntax_error_with_line_and_caret() -> None:
    with pytest.raises(StrategySyntaxError) as info:
        check_policy("def s(df):\n    return [x for x in\n")
    assert info.value.error_type == "syntax"
    assert "Security validation" not in str(info.value)
    assert str(info.value).startswith("syntax error on line 2: ")
    assert str(info.value).endswith("return [x for x in\n           ^")
    with pytest.raises(StrategySyntaxError):
        check_policy("def s(df):\n    return []\nreturn 1\n")


def test_a_main_guard_is_not_checked_because_it_never_runs() -> None:
    code = (
        "def s(df):\n    return []\n"
        "if __name__ == '__main__':\n    print(s(pd.read_csv('prices.csv')))\n"
    )
    assert check_policy(code).entry == "s"


@pytest.mark.parametrize(
    "snippet",
    [
        "getattr(df, 'close')",
        "hasattr(df, 'close')",
        "setattr(df, 'attrs', {})",
        "vars(df)",
        "dir(df)",
        "type('T', (), {})",
        "'{0} {1:.2f}'.format('a', 1.0)",
        "'{a}'.format_map({'a': 1})",
        "'%s-%d' % ('a', 1)",
        "type(df).__name__",
        "df.to_string()",
        "df.to_csv()",
        "df.info()",
        "pd.set_option('display.width', 200)",
        "df.query('close > @x')",
        "pd.api.types.is_numeric_dtype(df['close'])",
        "df._mgr",
        "memoryview(b'x')",
        "object()",
        "super",
        "NotImplementedError",
        "np.lib.stride_tricks.sliding_window_view(np.arange(4), 2)",
        "pd.read_csv(io.StringIO('a,b\\n1,2'))",
    ],
)
def test_everyday_python_passes(snippet: str) -> None:
    check_policy(f"import io\ndef s(df):\n    x = 1\n    return {snippet}\n")


@pytest.mark.parametrize(
    "code",
    [
        "class A:\n    def __init__(self, n):\n        self.n = n\n"
        "    def __repr__(self):\n        return f'A({self.n})'\n"
        "def s(df):\n    return [A(1)]\n",
        "from dataclasses import dataclass\n@dataclass\nclass C:\n    n: int = 2\n"
        "def s(df):\n    return [C()]\n",
        "import functools\n@functools.lru_cache(maxsize=None)\ndef f(x):\n    return x\n"
        "def s(df):\n    return [f(1)]\n",
        "class B(dict):\n    def __init__(self):\n        super().__init__(a=1)\n"
        "    @property\n    def a(self):\n        return self['a']\n"
        "def s(df):\n    return [B()]\n",
        "n = 0\ndef s(df):\n    global n\n    n += 1\n    return []\n",
        "def s(df):\n    k = 0\n    def inc():\n        nonlocal k\n        k += 1\n"
        "    inc()\n    return []\n",
        "def s(df: pd.DataFrame) -> list[dict[str, object]]:\n    return []\n",
        "def s(df):\n    for df.x in []:\n        pass\n    return []\n",
        "from pandas.tseries.offsets import BDay\nfrom pandas.tseries.holiday import "
        "USFederalHolidayCalendar\nimport numpy.random\ndef s(df):\n    return []\n",
        "import collections, functools, itertools, re, typing, dataclasses, enum, decimal\n"
        "import fractions, bisect, heapq, operator, calendar, zoneinfo, json, copy, random\n"
        "import time, logging, warnings, io, string, textwrap, numbers, cmath, array, struct\n"
        "import hashlib, base64, uuid, pprint, math, statistics, datetime\n"
        "from __future__ import annotations\ndef s(df):\n    return []\n",
        "def s(df):\n    try:\n        pass\n    except (FloatingPointError, OSError, Warning):\n"
        "        pass\n    return []\n",
        "def s(df):\n    match df.shape:\n        case (n, _):\n            return []\n",
    ],
)
def test_everyday_programs_pass(code: str) -> None:
    if "from __future__" in code:
        code = "from __future__ import annotations\n" + code.replace(
            "from __future__ import annotations\n", ""
        )
    check_policy(code)


def test_entry_point_single_function() -> None:
    assert check_policy("def my_strategy(df):\n    return []\n").entry == "my_strategy"


def test_entry_point_with_helpers_called_by_it() -> None:
    code = (
        "def pct(x):\n    return x * 100\n"
        "def score(row):\n    return pct(row)\n"
        "def my_strategy(df):\n    return [{'s': score(1)}]\n"
    )
    report = check_policy(code)
    assert report.entry == "my_strategy"
    assert report.functions == ("pct", "score", "my_strategy")


def test_entry_point_underscore_helpers_are_skipped() -> None:
    code = "def _helper(x):\n    return x\ndef go(df):\n    return []\n"
    assert check_policy(code).entry == "go"


def test_entry_point_name_containing_strategy_wins() -> None:
    code = "def unused(x):\n    return x\ndef gap_strategy(df):\n    return []\n"
    assert check_policy(code).entry == "gap_strategy"


def test_entry_point_missing() -> None:
    assert "no strategy function" in _refused("x = 1\n")
    assert "no strategy function" in _refused("def f(a, b):\n    return []\n")


def test_entry_point_ambiguous() -> None:
    message = _refused("def a(df):\n    return []\ndef b(df):\n    return []\n")
    assert "several candidate strategy functions (a, b)" in message


def test_fstrings_with_format_specs_are_allowed() -> None:
    code = (
        "def s(df):\n    x = 3.14159\n"
        "    return [{'m': f'{x:.1f}% {x:>10,.2f} {x!r} {format(x, \".3f\")} {\"%.2f\" % x}'}]\n"
    )
    assert check_policy(code).entry == "s"


def test_allowed_imports_are_reported() -> None:
    code = (
        "import math\nfrom datetime import date\nimport statistics as st\n"
        "def s(df):\n    return []\n"
    )
    assert check_policy(code).imports == ("math", "datetime", "statistics")


def test_checked_tree_is_what_compiles() -> None:
    report = check_policy("def s(df):\n    return [{'n': 1}]\n")
    assert report.code.co_filename == "<strategy>"
    scope: dict[str, object] = {}
    exec(report.code, scope)
    assert callable(scope["s"])


def test_size_and_depth_caps_apply_before_parsing() -> None:
    assert "characters" in _refused("def s(df):\n    return []\n" + "#" * 200_000)
    assert "nested deeper" in _refused("def s(df):\n    return " + "[" * 70 + "]" * 70)


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("import statistics\ndef s(df):\n    return statistics.sys.modules['os']\n", "'.sys'"),
        ("def s(df):\n    return np.ma.extras.ma.builtins.open\n", "'.builtins'"),
        ("def s(df):\n    return np.ma.extras.ma.inspect\n", "'.inspect'"),
        ("import datetime\ndef s(df):\n    return datetime.sys\n", "'.sys'"),
        ("def s(df):\n    return pd.core.common.gc\n", "'.gc'"),
        ("def s(df):\n    return np.os\n", "'.os'"),
        ("def s(df):\n    return np.importlib\n", "'.importlib'"),
        ("def s(df):\n    return np.ctypes\n", "'.ctypes'"),
    ],
)
def test_attribute_chains_to_modules_are_refused(code: str, reason: str) -> None:
    with pytest.raises(PolicyError) as info:
        check_policy(code)
    assert reason in str(info.value) and "line " in str(info.value)


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        ("pd.eval('pd.io.common.os')", "may not read attributes"),
        ("df.eval('close.__class__')", "may not read attributes"),
        ("df.query('np == 1')", "may not use the module 'np'"),
        ("df.query('__import__ == 1')", "may not use the name"),
        ("df.query('f(close).x > 1')", "may not read attributes"),
        ("df.eval('close.values.ctypes')", "may not read attributes"),
        ("df.query('close ==')", "not an expression the policy can check"),
        ("pd.eval('\"__class__\"')", "special"),
    ],
)
def test_eval_and_query_strings_are_checked(call: str, reason: str) -> None:
    with pytest.raises(PolicyError) as info:
        check_policy(f"def s(df):\n    x = 1\n    return {call}\n")
    assert reason in str(info.value) and "line 3: " in str(info.value), str(info.value)


@pytest.mark.parametrize(
    "call",
    [
        "df.query('close > open and volume_ratio > 1')",
        "df.query('`gap_pct` > 2 or ticker == \"AAPL\"')",
        "df.eval('spread = high - low')",
        "df.eval('a = close * 2\\nb = a + open')",
        "pd.eval('1 + 2')",
        "df.query('abs(returns) > 0.01')",
        "df.query('close > @x')",
        "df.eval('a', local_dict={})",
    ],
)
def test_plain_eval_and_query_strings_pass(call: str) -> None:
    check_policy(f"def s(df):\n    return {call}\n")


def test_lone_surrogates_are_reported_as_invalid_text() -> None:
    with pytest.raises(StrategySyntaxError, match="not valid Unicode"):
        check_policy("x = '\ud800'\ndef s(df):\n    return []\n")
