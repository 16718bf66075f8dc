"""The policy check: messages with rule and line, entry-point choice, format handling."""

from __future__ import annotations

import pytest

from strategyq.errors import PolicyError
from strategyq.sandbox import check_policy


def _refused(code: str) -> str:
    with pytest.raises(PolicyError) as info:
        check_policy(code)
    message = str(info.value)
    assert message.startswith("Security validation failed: ")
    return message


def test_import_message_names_module_and_line() -> None:
    code = "import pandas as pd\n\nimport os\ndef s(df):\n    return []\n"
    assert _refused(code).startswith("Security validation failed: import of 'os' is not allowed")
    assert _refused(code).endswith("(line 3)")


@pytest.mark.parametrize(
    ("snippet", "fragment"),
    [
        ("eval('1')", "'eval' is not allowed"),
        ("exec('1')", "'exec' is not allowed"),
        ("compile('1', 's', 'exec')", "'compile' is not allowed"),
        ("open('/etc/passwd')", "'open' is not allowed"),
        ("__import__('os')", "special name '__import__'"),
        ("getattr(df, 'x')", "'getattr' is not allowed"),
        ("setattr(df, 'x', 1)", "'setattr' is not allowed"),
        ("vars(df)", "'vars' is not allowed"),
        ("globals()", "'globals' is not allowed"),
        ("dir(df)", "'dir' is not allowed"),
        ("breakpoint()", "'breakpoint' is not allowed"),
        ("input()", "'input' is not allowed"),
        ("memoryview(b'x')", "'memoryview' is not allowed"),
        ("type('T', (), {})", "type() with more than one argument"),
        ("df.__class__", "special attribute '__class__'"),
        ("df._mgr", "'_mgr' is not allowed: it is private"),
        ("pd.read_csv('x')", "'read_csv' is not allowed"),
        ("df.to_csv('x')", "'to_csv' is not allowed"),
        ("pd.read_pickle('x')", "'read_pickle' is not allowed"),
        ("np.load('x')", "'load' is not allowed"),
        ("np.fromfile('x')", "'fromfile' is not allowed"),
        ("np.memmap('x')", "'memmap' is not allowed"),
        ("np.save('x', df)", "'save' is not allowed"),
        ("np.savez('x', df)", "'savez' is not allowed"),
        ("df.values.tofile('x')", "'tofile' is not allowed"),
        ("df.query('close > @x')", "may not reference local variables"),
        ("df.eval('a', local_dict={})", "accepts only the expression"),
        ("df.style", "'style' is not allowed"),
        ("df.plot()", "'plot' is not allowed"),
        ("pd.set_option('plotting.backend', 'x')", "'set_option' is not allowed"),
        ("np.ctypeslib", "'ctypeslib' is not allowed"),
        ("np.lib.stride_tricks.as_strided(df, (1,))", "'lib' is not allowed"),
        ("pd.compat", "'compat' is not allowed"),
        ("pd.io", "'io' is not allowed"),
        ("'{0.x}'.format(df)", "'format' is not allowed"),
        ("'{a}'.format_map({'a': 1})", "'format_map' is not allowed"),
        ("df.apply('_constructor')", "may not name private methods"),
        ("'__class__'", "strings naming special attributes"),
    ],
)
def test_refused_expressions(snippet: str, fragment: str) -> None:
    message = _refused(f"def s(df):\n    x = 1\n    return {snippet}\n")
    assert fragment in message
    assert message.endswith("(line 3)")


@pytest.mark.parametrize(
    ("code", "fragment"),
    [
        ("from pandas import read_csv\ndef s(df):\n    return []\n", "'read_csv'"),
        ("from os import path\ndef s(df):\n    return []\n", "import of 'os'"),
        ("from . import x\ndef s(df):\n    return []\n", "relative imports"),
        ("from math import *\ndef s(df):\n    return []\n", "star imports"),
        ("import numpy.ctypeslib\ndef s(df):\n    return []\n", "'numpy.ctypeslib'"),
        ("class A:\n    pass\ndef s(df):\n    return []\n", "class definitions"),
        ("def d(f):\n    return f\n@d\ndef s(df):\n    return []\n", "decorators"),
        ("async def s(df):\n    return []\n", "async functions"),
        ("def s(df):\n    for df.x in []:\n        pass\n    return []\n", "plain names"),
        ("def s(df):\n    global g\n    return []\n", "global statements"),
        ("def s(df):\n    return __ｉmport__\n", "special name '__import__'"),
        ("def s(df):\n    return [x for df.y in [1]]\n", "plain names"),
        ("def s(df):\n    match df:\n        case str(__class__=c):\n            return []\n",
         "special attribute '__class__'"),
        ("def s(df):\n    eval = 1\n    return []\n", "'eval'"),
        ("def s(df):\n    return [\n", "syntax error"),
        ("", "empty"),
    ],
)  # fmt: skip
def test_refused_programs(code: str, fragment: str) -> None:
    assert fragment in _refused(code)


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
        ("import statistics\ndef s(df):\n    return statistics.sys.modules['os']\n", "'sys'"),
        ("def s(df):\n    return np.ma.extras.ma.builtins.open\n", "'builtins'"),
        ("def s(df):\n    return np.polynomial.polyutils.operator\n", "'operator'"),
        ("def s(df):\n    return np.ma.extras.ma.inspect\n", "'inspect'"),
        ("import datetime\ndef s(df):\n    return datetime.sys\n", "'sys'"),
        ("def s(df):\n    return pd.core.common.gc\n", "'core'"),
        ("def s(df):\n    return np.os\n", "'os'"),
        ("def s(df):\n    return np.importlib\n", "'importlib'"),
        ("def s(df):\n    return np.ctypes\n", "'ctypes'"),
    ],
)
def test_attribute_chains_to_modules_are_refused(code: str, reason: str) -> None:
    with pytest.raises(PolicyError) as info:
        check_policy(code)
    assert reason in str(info.value) and "(line " in str(info.value)


@pytest.mark.parametrize(
    ("call", "reason"),
    [
        ("pd.eval('pd.io.common.os')", "may not read attributes"),
        ("df.eval('close.__class__')", "may not read attributes"),
        ("df.query('np == 1')", "may not use 'np'"),
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
    assert reason in str(info.value) and "(line 3)" in str(info.value), str(info.value)


@pytest.mark.parametrize(
    "call",
    [
        "df.query('close > open and volume_ratio > 1')",
        "df.query('`gap_pct` > 2 or ticker == \"AAPL\"')",
        "df.eval('spread = high - low')",
        "df.eval('a = close * 2\\nb = a + open')",
        "pd.eval('1 + 2')",
        "df.query('abs(returns) > 0.01')",
    ],
)
def test_plain_eval_and_query_strings_pass(call: str) -> None:
    check_policy(f"def s(df):\n    return {call}\n")
