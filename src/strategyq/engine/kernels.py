"""Compiled loops for the sweep path: every combination's equity curve in one pass.

:func:`group_equity` is the equity curve of each group of a sweep's batch
(:mod:`strategyq.engine.batch`) computed straight from its taken trades: the
same marks, steps, (session, lag) cells and recurrence as
``portfolio.build`` and ``portfolio._cell_recurrence``, the same floating-point
operations in the same order, so each curve equals a single backtest's bit for
bit. In NumPy the same work is two dozen passes over every held session of
every trade (200,000 for a 10 × 10 grid on 14 years of one ticker) and a round
of array calls per trade of the longest group; compiled, it is one pass.

numba compiles the loop. It is imported on the first call only (a second or
so, and about 50 MiB): an executor that never runs a large enough sweep never
imports it. Its compiled code is cached in ``NUMBA_CACHE_DIR`` when that is
set, else in a directory of the temporary directory private to the process's
user (``strategyq-numba-<uid>``, mode 0700; when a directory of that name
belongs to someone else or others may write to it, nothing is cached and the
loop is compiled in each process). Without numba, :func:`group_equity` is
``None`` and the batch computes the curves in NumPy (the same values).
"""

from __future__ import annotations

import functools
import logging
import os
import stat
import tempfile
from collections.abc import Callable
from typing import Any

import numpy as np

from strategyq.engine.market import FloatArray, IntArray

log = logging.getLogger(__name__)

BoolArray = Any


def equity_by_group(
    first_mark: IntArray,
    exit_row: IntArray,
    entry_price: FloatArray,
    exit_price: FloatArray,
    short: BoolArray,
    group: IntArray,
    sized_on: IntArray,
    session_of: IntArray,
    close: FloatArray,
    cost: float,
    max_positions: float,
    capital: float,
    equity: FloatArray,
    ok: BoolArray,
) -> None:
    """Fill ``equity[g]`` (after 0 … sessions sessions) of every group ``g`` still ``ok``.

    Per taken trade (grouped: ``group`` ascending): its first marked market row,
    its exit row, entry and exit price, direction, and ``sized_on``, the
    calendar session its size is taken on; ``session_of`` maps each market
    row to its calendar session. A group is left not ``ok`` where
    ``portfolio._cell_recurrence`` gives up (no cell, or a curve that meets 0
    or a non-finite value): the general loop decides those.

    Written in the subset of Python numba compiles; it runs (slowly) as plain
    Python too, which is how its equality with the NumPy path is also checked.
    """
    n_trades = len(group)
    sessions = equity.shape[1] - 1
    buy_cost = 1.0 + cost
    sell_cost = 1.0 - cost
    start = 0
    while start < n_trades:
        g = group[start]
        end = start
        while end < n_trades and group[end] == g:
            end += 1
        if not ok[g]:
            start = end
            continue
        marks = 0
        for i in range(start, end):
            marks += exit_row[i] - first_mark[i] + 1
        day = np.empty(marks, dtype=np.int64)
        lag = np.empty(marks, dtype=np.int64)
        sized = np.empty(marks, dtype=np.float64)
        m = 0
        ordered = True
        for i in range(start, end):
            entry = entry_price[i]
            previous = 0.0
            for row in range(first_mark[i], exit_row[i] + 1):
                price = exit_price[i] if row == exit_row[i] else close[row]
                # portfolio._marks: the trade's return as if closed at this price, net.
                if short[i]:
                    buy = price * buy_cost
                    sell = entry * sell_cost
                    value = (sell - buy) / sell
                else:
                    value = (price * sell_cost) / (entry * buy_cost) - 1.0
                if not np.isfinite(value):
                    value = 0.0
                # portfolio.build: each mark's step from the one before it in its trade.
                step = value if row == first_mark[i] else value - previous
                previous = value
                day[m] = session_of[row]
                lag[m] = day[m] + 1 - sized_on[i]
                sized[m] = step / max_positions
                if m > 0 and (
                    day[m] < day[m - 1] or (day[m] == day[m - 1] and lag[m] <= lag[m - 1])
                ):
                    ordered = False
                m += 1
        order = (
            np.arange(marks)
            if ordered
            else np.argsort(day * (sessions + 2) + lag, kind="mergesort")
        )
        # Cells: the marks of one (session, lag) summed in the marks' order, from 0.0 (as
        # bincount sums them); a cell of 0 or of lag 0 adds nothing to the recurrence.
        row_of = equity[g]
        row_of[:] = capital
        current = capital
        done = 0
        cells = 0
        k = 0
        while k < marks:
            t = day[order[k]]
            cell_lag = lag[order[k]]
            total = 0.0
            while k < marks and day[order[k]] == t and lag[order[k]] == cell_lag:
                total = total + sized[order[k]]
                k += 1
            if total == 0.0 or cell_lag <= 0:
                continue
            cells += 1
            # portfolio._cell_recurrence, cell by cell.
            for s in range(done + 1, t + 1):
                row_of[s] = current
            current = current + total * row_of[t + 1 - cell_lag]
            row_of[t + 1] = current
            done = t + 1
        for s in range(done + 1, sessions + 1):
            row_of[s] = current
        if cells == 0:
            ok[g] = False
        else:
            for s in range(sessions + 1):
                if not np.isfinite(row_of[s]) or row_of[s] == 0.0:
                    ok[g] = False
                    break
        start = end


@functools.cache
def group_equity() -> Callable[..., None] | None:
    """:func:`equity_by_group` compiled, or ``None`` when numba is not installed."""
    try:
        import numba
    except ImportError:
        return None
    cache = _cache_dir()
    if cache is not None:
        numba.config.CACHE_DIR = cache  # type: ignore[attr-defined]  # read when compiling
    compiled: Callable[..., None] = numba.njit(cache=cache is not None, nogil=True)(equity_by_group)
    return compiled


def _cache_dir() -> str | None:
    """Where numba keeps the compiled loop: ``NUMBA_CACHE_DIR``, else a private directory."""
    given = os.environ.get("NUMBA_CACHE_DIR")
    if given:
        return given
    path = os.path.join(tempfile.gettempdir(), f"strategyq-numba-{os.getuid()}")
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        info = os.lstat(path)
    except OSError as exc:
        log.info("numba's cache is off: %s", exc)
        return None
    # Compiled code is loaded from here into the trusted process: only a directory
    # that is this user's own, and that no one else may write to, will do.
    if (
        not stat.S_ISDIR(info.st_mode)
        or info.st_uid != os.getuid()
        or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    ):
        log.warning("numba's cache is off: %s is not a private directory of this user", path)
        return None
    return path
