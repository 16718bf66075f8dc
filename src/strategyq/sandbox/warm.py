"""Prepare the forking parent and check which isolation layers this machine supports."""

from __future__ import annotations

import ctypes
import errno
import os
from typing import Any

import orjson

from strategyq.sandbox import landlock, seccomp
from strategyq.sandbox._libc import LIBC
from strategyq.sandbox.lockdown import (
    drop_capabilities,
    plan,
    set_no_new_privs,
    set_rlimits,
)

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


def warm_up() -> None:
    """Import pandas/numpy and exercise their lazily imported parts, in the forking parent.

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

    from strategyq.sandbox import checker, child, namespace, result

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


def _probe_child(write_fd: int) -> None:
    found = dict.fromkeys(("rlimits", "no_new_privs", "landlock", "landlock_net", "seccomp"), False)
    try:
        try:
            set_rlimits(plan(memory_mb=512, time_limit_s=5, max_open_files=64, sandboxed=False))
            found["rlimits"] = True
            set_no_new_privs()
            found["no_new_privs"] = True
            drop_capabilities()
            abi = landlock.abi_version()
            landlock.restrict_self(abi)
            try:
                os.open("/", os.O_RDONLY)
            except PermissionError:
                found["landlock"] = True
                found["landlock_net"] = abi >= 4
            seccomp.load_program(seccomp.compiled_program())
            # socket(AF_INET, SOCK_STREAM) through libc: no module import needed.
            if LIBC.socket(2, 1, 0) < 0 and ctypes.get_errno() == errno.EPERM:
                found["seccomp"] = True
        except OSError:
            pass
        os.write(write_fd, orjson.dumps(found))
    finally:
        os._exit(0)


def probe_layers() -> dict[str, bool]:
    """Which layers this kernel and process support, by applying them in a throwaway child.

    Returns:
        ``{"landlock", "landlock_net", "seccomp", "rlimits", "no_new_privs"}`` → bool;
        a layer counts only if it was applied *and* then refused what it should.
    """
    seccomp.compiled_program()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(read_fd)
        _probe_child(write_fd)
    os.close(write_fd)
    try:
        data = b""
        while chunk := os.read(read_fd, 4096):
            data += chunk
    finally:
        os.close(read_fd)
        os.waitpid(pid, 0)
    try:
        found = orjson.loads(data)
    except orjson.JSONDecodeError:
        found = {}
    keys = ("landlock", "landlock_net", "seccomp", "rlimits", "no_new_privs")
    return (
        {key: bool(found.get(key, False)) for key in keys}
        if isinstance(found, dict)
        else {key: False for key in keys}
    )
