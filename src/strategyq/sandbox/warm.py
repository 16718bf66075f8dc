"""Prepare the forking parent and check which isolation layers this machine supports."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import orjson

from strategyq.sandbox import landlock, seccomp

log = logging.getLogger(__name__)

BLAS_THREAD_VARIABLES = (
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)

_WARM_STRATEGY = """
def warm(df):
    import math, statistics, datetime
    out = df.sort_values(['ticker', 'date']).copy()
    out['r'] = out.groupby('ticker')['close'].pct_change()
    roll = lambda s: s.rolling(3, min_periods=1).mean()
    out['m'] = out.groupby('ticker')['close'].transform(roll)
    out['e'] = out['close'].ewm(span=3).mean()
    out['w'] = np.where(out['close'] > out['m'], 1, -1)
    out['q'] = out['close'].rank(pct=True).round(2)
    out['d'] = pd.to_datetime(out['date']).dt.strftime('%Y-%m-%d')
    both = pd.concat([out, out]).drop_duplicates().reset_index(drop=True)
    means = both.groupby('ticker', as_index=False)['close'].agg(['mean', 'max'])
    both = both.merge(means, on='ticker')
    both = both.set_index('date').resample('D').last().dropna(how='all').reset_index()
    agg = out.groupby('ticker').apply(lambda g: g['close'].iloc[-1], include_groups=False)
    stats = statistics.mean(out['close'].tolist()) + math.sqrt(2)
    desc = out['close'].describe().to_dict()
    msg = f"{stats:.2f} {desc['mean']:,.1f} {datetime.date(2024, 1, 1).isoformat()}"
    rows = [{'ticker': r.ticker, 'date': r.date, 'v': r.close, 'm': msg} for r in out.itertuples()]
    rows += [dict(r) for _, r in out.head(2).iterrows()]
    rows += out.head(2).to_dict(orient='records')
    text = str(out) + repr(out['close']) + str(agg) + str(out.dtypes) + str(out.head(1).T)
    rows.append({'text': text[:1]})
    rows.append({'agg': agg.tolist(), 'q': out['close'].quantile([0.1, 0.9]).tolist()})
    return rows
"""


def warm_frame() -> Any:
    """A tiny market frame shaped like the real one."""
    import numpy as np
    import pandas as pd

    dates = pd.date_range("2024-01-01", periods=6, freq="D")
    return pd.DataFrame(
        {
            "ticker": ["AAA"] * 6 + ["BBB"] * 6,
            "date": list(dates) * 2,
            "close": np.linspace(10.0, 21.0, 12),
            "volume": np.arange(12, dtype="int64") * 1000,
        }
    )


def warm_up(libraries: Sequence[str] | None = None) -> None:
    """Import pandas/numpy and exercise their lazily imported parts, in the forking parent.

    ``libraries`` are the optional libraries to preload (``policy.LIBRARIES``; the
    ``STRATEGYQ_SANDBOX_LIBRARIES`` list when None).

    A locked-down child cannot read files, so anything a strategy needs must
    already be imported. Also pins BLAS to one thread (effective only if numpy
    is not imported yet; whoever starts the process should set these too) and
    compiles the seccomp program once.
    """
    for name in BLAS_THREAD_VARIABLES:
        os.environ.setdefault(name, "1")
    import datetime  # noqa: F401
    import decimal  # noqa: F401
    import fractions  # noqa: F401
    import math  # noqa: F401
    import statistics  # noqa: F401
    import traceback  # noqa: F401

    import numpy  # noqa: F401
    import pandas  # noqa: F401

    from strategyq.sandbox import checker, child, namespace, preload, result

    preload.preload(libraries=libraries)

    report = checker.check(_WARM_STRATEGY)
    scope = namespace.namespace(restricted=True)
    exec(report.code, scope)
    instances = scope[report.entry](warm_frame())
    result.decode(result.encode_result(instances))
    try:
        raise ValueError("warm")
    except ValueError as exc:
        child.classify(exc, _WARM_STRATEGY)
    orjson.dumps({"x": 1})
    seccomp.compiled_program()


CANARY = """
import errno, os, socket, datetime

def canary(df):
    found = {}
    try:
        os.close(os.open('/', os.O_RDONLY))
        found['landlock'] = False
    except OSError as exc:
        # EACCES is Landlock's answer (seccomp lets read-only opens through to it).
        found['landlock'] = exc.errno == errno.EACCES
    try:
        os.close(os.open('/tmp/.strategyq-canary', os.O_WRONLY | os.O_CREAT, 0o600))
        found['seccomp_files'] = False
    except OSError as exc:
        found['seccomp_files'] = exc.errno == errno.EPERM
    try:
        socket.socket().close()
        found['seccomp'] = False
    except OSError as exc:
        found['seccomp'] = exc.errno == errno.EPERM
    try:
        # Reading (never changing) init's priority: the filter allows the caller's only.
        os.getpriority(os.PRIO_PROCESS, 1)
        found['seccomp_others'] = False
    except OSError as exc:
        found['seccomp_others'] = exc.errno == errno.EPERM
    # The work a first-day strategy does: reshaping, statistics, date parsing and formatting.
    wide = df.pivot(index='date', columns='ticker', values='close')
    stats = wide.stack().unstack().describe()
    day = datetime.datetime.strptime('2024-01-02', '%Y-%m-%d').date()
    text = df['date'].max().strftime('%Y-%m-%d') + str(datetime.date.today().year > 2000)
    found['tasks'] = len(stats) == 8 and day.year == 2024 and len(text) > 10
    return [{'ticker': 'CANARY', **found}]
"""
"""The start-up self-check: a task run through the same spawn and lock-down path as every task."""

LAYER_KEYS = ("landlock", "landlock_net", "seccomp", "rlimits", "no_new_privs", "canary")


def probe_layers(landlock_abi_max: int | None = None) -> dict[str, bool]:
    """Which layers hold here, by running a canary task exactly as a task is run.

    The canary is forked by :func:`strategyq.sandbox.forkserver.spawn`, locks
    down with the plan a task gets, reads its program from the source pipe and
    answers on the result pipe. It then checks that a file cannot be opened
    (Landlock), that a socket, a file write and another process's priority are
    refused (seccomp), and does a first-day strategy's work (pivot, describe,
    strptime, strftime). A machine where tasks would fail reports ``canary``
    False, with the reason logged, and the worker refuses to start.

    Returns:
        ``{"landlock", "landlock_net", "seccomp", "rlimits", "no_new_privs", "canary"}`` → bool;
        a layer counts only if it was applied *and* then refused what it should.
    """
    from strategyq.sandbox import local
    from strategyq.settings import SandboxLimits

    found = dict.fromkeys(LAYER_KEYS, False)
    limits = SandboxLimits(time_limit_s=20, memory_mb=512, answer_max_bytes=1 << 16)
    try:
        rows = local.run(
            CANARY, warm_frame(), limits, check_policy=False, landlock_abi_max=landlock_abi_max
        )
    except Exception as exc:  # the reason a worker will refuse to start
        log.error("sandbox self-check failed: %s", exc)
        return found
    answer = rows[0] if rows and isinstance(rows[0], dict) else {}
    abi = landlock.abi_version()
    if landlock_abi_max is not None:
        abi = min(abi, landlock_abi_max)
    seccomp_ok = all(answer.get(k) is True for k in ("seccomp", "seccomp_files", "seccomp_others"))
    found.update(
        landlock=answer.get("landlock") is True,
        landlock_net=answer.get("landlock") is True and abi >= 4,
        seccomp=seccomp_ok,
        # The canary ran at all: the rlimits, no_new_privs and capability steps came first.
        rlimits=bool(answer),
        no_new_privs=bool(answer),
        canary=bool(answer) and answer.get("tasks") is True and seccomp_ok,
    )
    if not found["canary"]:
        log.error("sandbox self-check: the canary task did not complete as it should: %s", answer)
    return found
