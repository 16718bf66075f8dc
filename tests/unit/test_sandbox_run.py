"""run(): legitimate strategies, result conversion, error classes, cancel, layers."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from strategyq import errors
from strategyq.sandbox import landlock, probe_layers, run, warm_up
from strategyq.settings import SandboxLimits

LIMITS = SandboxLimits(time_limit_s=5, memory_mb=512)


@pytest.fixture(scope="module", autouse=True)
def warmed() -> None:
    warm_up()


@pytest.fixture(scope="module")
def market() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    dates = pd.date_range("2024-01-01", periods=60, freq="B")
    frames = []
    for ticker in ("AAPL", "MSFT", "IBM"):
        close = 100 + rng.normal(0, 2, len(dates)).cumsum()
        frames.append(
            pd.DataFrame(
                {
                    "ticker": ticker,
                    "date": dates,
                    "open": close * (1 + rng.normal(0, 0.02, len(dates))),
                    "close": close,
                    "volume": rng.integers(1_000, 10_000, len(dates)),
                }
            )
        )
    df = pd.concat(frames, ignore_index=True)
    df["gap_pct"] = (df["open"] / df.groupby("ticker")["close"].shift(1) - 1) * 100
    df["volume_ratio"] = df["volume"] / df.groupby("ticker")["volume"].transform("mean")
    return df


SEED_GAP_UP = """
def gap_up_strategy(df):
    instances = []
    df_filtered = df[(df['gap_pct'] > 1.0) & (df['volume_ratio'] > 0.5)]

    for _, row in df_filtered.iterrows():
        instances.append({
            'ticker': row['ticker'],
            'date': str(row['date']),
            'signal': True,
            'gap_percent': row['gap_pct'],
            'message': f"{row['ticker']} gapped up {row['gap_pct']:.1f}%"
        })

    return instances
"""


def test_seed_gap_up_strategy(market: pd.DataFrame) -> None:
    result = run(SEED_GAP_UP, market, LIMITS)
    expected = market[(market["gap_pct"] > 1.0) & (market["volume_ratio"] > 0.5)]
    assert len(result) == len(expected) > 0
    first = result[0]
    assert first["signal"] is True
    assert isinstance(first["gap_percent"], float)
    assert first["message"] == f"{first['ticker']} gapped up {first['gap_percent']:.1f}%"


@pytest.mark.parametrize(
    "body",
    [
        # rolling windows and numpy
        "d = df.sort_values(['ticker', 'date']).copy()\n"
        "d['sma'] = d.groupby('ticker')['close'].transform(lambda s: s.rolling(5).mean())\n"
        "d['sig'] = np.where(d['close'] > d['sma'], 'long', 'short')\n"
        "return [{'ticker': r.ticker, 'date': r.date, 'direction': r.sig}\n"
        "        for r in d.tail(3).itertuples()]",
        # groupby/apply with callables, concat, sorting
        "top = lambda g: g.nlargest(1, 'close')\n"
        "best = df.groupby('ticker').apply(top, include_groups=False).reset_index()\n"
        "both = pd.concat([best, best]).sort_values('close', ascending=False)\n"
        "return [{'ticker': t, 'score': float(c)} for t, c in zip(both['ticker'], both['close'])]",
        # math/statistics/datetime imports and formatting
        "import math\nimport statistics\nfrom datetime import date\n"
        "m = statistics.mean(df['close'].tolist())\n"
        "return [{'ticker': 'ALL', 'date': date(2024, 1, 2), 'score': math.log(m),\n"
        "         'message': f'mean {m:,.2f} ({m / 100:.1%})', 'old': '%.3f' % m}]",
        # a DataFrame result
        "out = df[df['volume_ratio'] > 1.2][['ticker', 'date', 'close']].head(5)\nreturn out",
    ],
    ids=["rolling_np_where", "groupby_apply_concat_sort", "stdlib_and_formatting", "dataframe"],
)
def test_legitimate_strategies(market: pd.DataFrame, body: str) -> None:
    lines = "\n".join("    " + line for line in body.splitlines())
    result = run(f"def strategy(df):\n{lines}\n", market, LIMITS)
    assert result and all(isinstance(item, dict) and "ticker" in item for item in result)


def test_values_become_plain_json(market: pd.DataFrame) -> None:
    code = (
        "def s(df):\n    return [{'ticker': 'A', 'i': np.int64(3), 'f': np.float32(1.5),\n"
        "        'nan': float('nan'), 'inf': np.inf, 'ts': pd.Timestamp('2024-01-02'),\n"
        "        'nat': pd.NaT, 'b': np.bool_(True), 'arr': np.arange(2), 2: 'int key'}]\n"
    )
    assert run(code, market, LIMITS) == [
        {
            "ticker": "A",
            "i": 3,
            "f": 1.5,
            "nan": None,
            "inf": None,
            "ts": "2024-01-02T00:00:00",
            "nat": None,
            "b": True,
            "arr": [0, 1],
            "2": "int key",
        }
    ]


def test_strategy_error_shows_only_user_frames(market: pd.DataFrame) -> None:
    code = (
        "def helper(x):\n    return x['missing']\n\ndef my_strategy(df):\n    return helper(df)\n"
    )
    with pytest.raises(errors.StrategyFailed) as info:
        run(code, market, LIMITS)
    message = str(info.value)
    assert "line 5, in my_strategy" in message
    assert "line 2, in helper" in message
    assert "KeyError: 'missing'" in message
    assert "site-packages" not in message and "/work" not in message and "pandas/" not in message


def test_exception_str_never_runs_in_parent(market: pd.DataFrame, tmp_path: object) -> None:
    code = (
        "class Loud(Exception):\n"
        "    def __str__(self):\n"
        "        import os\n"
        "        return 'pid=' + str(os.getpid())\n"
        "def s(df):\n    raise Loud()\n"
    )
    with pytest.raises(errors.StrategyFailed) as info:
        run(code, market, LIMITS, check_policy=False)
    assert f"pid={os.getpid()}" not in str(info.value)
    assert "Loud: pid=" in str(info.value)


def test_error_message_is_capped_and_cleaned(market: pd.DataFrame) -> None:
    code = "def s(df):\n    raise ValueError('\\x1b[31m' + 'x' * 100000)\n"
    with pytest.raises(errors.StrategyFailed) as info:
        run(code, market, LIMITS)
    assert len(str(info.value)) <= 4000 and "\x1b" not in str(info.value)


def test_timeout_is_reported(market: pd.DataFrame) -> None:
    limits = SandboxLimits(time_limit_s=0.5, memory_mb=256)
    with pytest.raises(errors.StrategyTimeout, match=r"longer than 0\.5 s"):
        run("def s(df):\n    while True:\n        pass\n", market, limits)


def test_cancel_fd_kills_the_run(market: pd.DataFrame) -> None:
    read_fd, write_fd = os.pipe()
    timer = threading.Timer(0.3, os.write, (write_fd, b"x"))
    timer.start()
    started = time.monotonic()
    try:
        with pytest.raises(errors.TaskCancelled):
            run("def s(df):\n    while True:\n        pass\n", market, LIMITS, cancel_fd=read_fd)
    finally:
        timer.join()
        assert os.read(read_fd, 1) == b"x"  # the sandbox did not consume it
        os.close(read_fd)
        os.close(write_fd)
    assert time.monotonic() - started < LIMITS.time_limit_s


def test_probe_layers_reports_every_layer() -> None:
    layers = probe_layers()
    assert set(layers) == {
        "landlock",
        "landlock_net",
        "seccomp",
        "rlimits",
        "no_new_privs",
        "canary",
    }
    assert all(layers.values()), layers


@pytest.fixture
def no_landlock(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(landlock, "abi_version", lambda: 0)
    yield


def test_child_refuses_when_a_layer_fails(market: pd.DataFrame, no_landlock: None) -> None:
    with pytest.raises(errors.SandboxUnavailable, match="'landlock' could not be applied"):
        run("def s(df):\n    return []\n", market, LIMITS)


def test_insecure_mode_is_explicit_and_keeps_rlimits(
    market: pd.DataFrame, no_landlock: None, tmp_path: object
) -> None:
    assert run(
        "def s(df):\n    return [{'n': len(df)}]\n", market, LIMITS, insecure_no_sandbox=True
    )
    with pytest.raises(errors.StrategyMemoryError):
        run("def s(df):\n    return [0] * 10 ** 10\n", market, LIMITS, insecure_no_sandbox=True)


def test_result_size_cap(market: pd.DataFrame) -> None:
    limits = SandboxLimits(time_limit_s=5, memory_mb=512, answer_max_bytes=10_000)
    with pytest.raises(errors.BadResult, match="larger than 10000 bytes"):
        run("def s(df):\n    return [{'x': 'a' * 20000}]\n", market, limits)


def test_frame_is_not_modified_in_parent(market: pd.DataFrame) -> None:
    before = market.copy()
    code = "def s(df):\n df['close'] = 0\n df.drop(columns=['open'], inplace=True)\n return []"
    run(code, market, LIMITS)
    pd.testing.assert_frame_equal(market, before)


def test_children_are_all_collected(market: pd.DataFrame) -> None:
    from strategyq.sandbox import runner

    for _ in range(10):
        run("def s(df):\n    return []\n", market, LIMITS)
    runner.reap_finished(block=True)
    assert runner._unreaped == []
    # No zombie children left (other live children, e.g. a test server, are fine).
    me = os.getpid()
    children = [
        int(pid)
        for task in os.listdir(f"/proc/{me}/task")
        for pid in Path(f"/proc/{me}/task/{task}/children").read_text().split()
    ]
    zombies = []
    for pid in children:
        with contextlib.suppress(FileNotFoundError):
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                zombies.append(pid)
    assert zombies == []


def test_an_import_after_lock_down_names_the_module(market: pd.DataFrame) -> None:
    # The warm parent here is the test process, where a library another test used may have
    # imported sqlite3 already: drop it so the child has to import it after lock-down.
    code = (
        "import sys\nsys.modules.pop('sqlite3', None)\nimport sqlite3\ndef s(df):\n    return []\n"
    )
    with pytest.raises(errors.ModuleUnavailable) as info:
        run(code, market, LIMITS, check_policy=False)
    assert str(info.value).startswith("the sandbox does not provide module 'sqlite3' (line 3)")
    assert info.value.error_type == "module_unavailable"


def test_a_c_level_lazy_import_names_the_module_and_line(market: pd.DataFrame) -> None:
    # As if _strptime had not been preloaded: time.strptime's C code imports it on every
    # call (datetime's caches it once imported, so a warm process would not ask again).
    code = (
        "import sys, time\ndef s(df):\n    del sys.modules['_strptime']\n"
        "    time.strptime('2024-01-02', '%Y-%m-%d')\n    return []\n"
    )
    with pytest.raises(errors.ModuleUnavailable) as info:
        run(code, market, LIMITS, check_policy=False)
    assert str(info.value).startswith("the sandbox does not provide module '_strptime' (line 4)")


def test_library_fallbacks_on_missing_modules_still_work(market: pd.DataFrame) -> None:
    # pandas tries optional accelerators (numexpr, bottleneck) and falls back when the
    # import fails: the sandbox's refusal is an ImportError like any other.
    code = "def s(df):\n    x = df.eval('close * 2').sum()\n    return [{'ticker': 'X', 'x': x}]\n"
    assert run(code, market, LIMITS)[0]["ticker"] == "X"
