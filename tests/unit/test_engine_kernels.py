"""The compiled equity loop of a sweep's batch gives the NumPy path's curves, bit for bit.

``batch.KERNEL_MIN_MARKS`` picks the compiled loop for large batches only; here
it is set to 0 (every batch compiled) or past any batch (every batch in NumPy),
and each signal set's metrics are compared with its single backtest's, with
``==`` on floats, over the trade models of ``test_engine_batch``.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from strategyq.engine import batch, kernels, market_from_frame
from strategyq.engine.columnar import column_signals
from strategyq.engine.market import Market
from strategyq.engine.signals import columns_from
from tests.unit.test_engine_batch import END, MODELS, START, _bars, _columns, _rows, _same


@pytest.fixture(scope="module")
def market() -> tuple[pd.DataFrame, Market]:
    bars = _bars(19)
    return bars, market_from_frame(bars)


@pytest.fixture
def compiled(monkeypatch: pytest.MonkeyPatch) -> None:
    assert kernels.group_equity() is not None, "numba is a dependency of the sweep path"
    monkeypatch.setattr(batch, "KERNEL_MIN_MARKS", 0)


@pytest.mark.usefixtures("compiled")
@pytest.mark.parametrize("name", list(MODELS))
def test_compiled_curves_give_each_sets_single_backtest(
    market: tuple[pd.DataFrame, Market], name: str
) -> None:
    bars, engine_market = market
    rng = np.random.default_rng(zlib.crc32(name.encode()) + 1)
    runs: list[Any] = [_columns(bars, rng, rate) for rate in np.linspace(0.003, 0.08, 24)]
    runs.append({"ticker": [], "date": [], "entry": [], "exit": []})
    _same(runs, engine_market, MODELS[name])


@pytest.mark.usefixtures("compiled")
def test_compiled_curves_of_shorts_give_their_single_backtests(
    market: tuple[pd.DataFrame, Market],
) -> None:
    bars, engine_market = market
    rng = np.random.default_rng(23)
    runs = [_rows(bars, rng, "short") for _ in range(8)]
    for model in (MODELS["one slot, hold 5, stop"], MODELS["three slots, trailing, costs"]):
        _same(runs, engine_market, model)


def _sets(bars: pd.DataFrame, window: Market, seed: int) -> list[Any]:
    rng = np.random.default_rng(seed)
    out = []
    for rate in np.linspace(0.005, 0.06, 12):
        fast = column_signals(_columns(bars, rng, rate), window, None)
        assert fast is not None
        out.append(columns_from(fast))
    return out


@pytest.mark.parametrize("name", list(MODELS))
def test_the_compiled_loop_and_numpy_give_the_same_curves(
    market: tuple[pd.DataFrame, Market], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same equity arrays and the same groups handed to the single path."""
    bars, engine_market = market
    window = engine_market.window(START.date(), END.date())
    sets = _sets(bars, window, zlib.crc32(name.encode()))
    model = MODELS[name].resolved(True)
    n = len(sets)
    cand, cand_group = batch.candidates(window, sets, model)
    chosen = batch._select(window, cand, cand_group, model, n)
    monkeypatch.setattr(batch, "KERNEL_MIN_MARKS", 1 << 62)
    by_numpy = batch._equity(window, cand, chosen, model, n)
    monkeypatch.setattr(batch, "KERNEL_MIN_MARKS", 0)
    by_kernel = batch._equity(window, cand, chosen, model, n)
    assert by_numpy is not None and by_kernel is not None
    _, numpy_equity, numpy_ok = by_numpy
    _, kernel_equity, kernel_ok = by_kernel
    assert numpy_ok.tolist() == kernel_ok.tolist()
    assert numpy_ok.any()
    assert numpy_equity[numpy_ok].tobytes() == kernel_equity[kernel_ok].tobytes()


def test_the_loop_uncompiled_gives_the_compiled_bits(market: tuple[pd.DataFrame, Market]) -> None:
    """The loop is ordinary Python as well: run both ways, the same curves."""
    _, engine_market = market
    window = engine_market.window(START.date(), END.date())
    close = window.close.copy()
    close[::37] = np.nan  # sessions without a close mark a trade flat
    rng = np.random.default_rng(4)
    trades = 30
    first = np.sort(rng.choice(window.rows - 20, trades, replace=False))
    exit_row = first + rng.integers(0, 15, trades)
    group = np.sort(rng.integers(0, 4, trades))
    session_of = np.searchsorted(window.calendar(), window.day)
    args = (
        first,
        exit_row,
        window.open[first],
        window.close[exit_row],
        rng.random(trades) < 0.3,
        group,
        session_of[first],
        session_of,
        close,
        0.0007,
        3.0,
        100_000.0,
    )
    shape = (4, len(window.calendar()) + 1)
    outs = []
    for loop in (kernels.equity_by_group, kernels.group_equity()):
        assert loop is not None
        equity, ok = np.zeros(shape), np.ones(4, dtype=bool)
        loop(*args, equity, ok)
        outs.append((equity.tobytes(), ok.tolist()))
    assert outs[0] == outs[1]
    assert any(outs[0][1])


def test_the_cache_directory_is_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    path = Path(kernels._cache_dir() or "")
    assert path == tmp_path / f"strategyq-numba-{os.getuid()}"
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    # One that others may write to is not used: nothing is loaded from it.
    path.chmod(0o777)
    assert kernels._cache_dir() is None
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "given"))
    assert kernels._cache_dir() == str(tmp_path / "given")


_COMPILE = """
import sys, time
import numpy as np
from strategyq.engine import kernels
t = time.perf_counter()
loop = kernels.group_equity()
equity, ok = np.zeros((1, 3)), np.ones(1, dtype=bool)
i = np.zeros(1, dtype=np.int64)
loop(i, i, np.ones(1), np.ones(1) * 2, np.zeros(1, dtype=bool), i, i, np.zeros(1, dtype=np.int64),
     np.ones(1), 0.0, 1.0, 100.0, equity, ok)
print(time.perf_counter() - t)
"""


def test_the_compiled_loop_is_cached_across_processes(tmp_path: Path) -> None:
    """A second process loads the compiled loop from the cache instead of compiling it."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    for _ in range(2):
        subprocess.run([sys.executable, "-c", _COMPILE], env=env, check=True, timeout=300)
    cached = list((tmp_path / "cache").rglob("*"))
    assert any(p.suffix == ".nbi" for p in cached) and any(p.suffix == ".nbc" for p in cached)


def test_the_engine_and_the_executor_import_no_numba() -> None:
    """Only a large enough sweep batch imports numba: never an executor's start."""
    code = (
        "import sys, strategyq.engine, strategyq.executor.main, strategyq.executor.run.dispatch; "
        "from strategyq.engine import run_backtest; assert 'numba' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
