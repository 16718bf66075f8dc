"""The strategy frame's ``ticker`` column answers string idioms as the loaded ``str`` one.

The child builds its frame over the shared memfd (:mod:`strategyq.sandbox.shared_frame`),
where ``ticker`` travels dictionary-encoded, and rebuilds the Python-backed ``str``
column the loader made (one object per ticker). Every strategy in
:mod:`tests.unit.ticker_idioms` is written for a string column; on either frame it must
return the same answer, sent as the same plain JSON: here on the attached frame, and
through a real sandbox host and child. (A Categorical ``ticker``
fails ``tests/unit/sandbox_legit.py``'s ``series_map_dict``: ``map`` of a Categorical
returns a Categorical, which has no ``max``.)
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from strategyq.data import MarketData
from strategyq.sandbox import result
from strategyq.sandbox.forkclient import ForkClient
from strategyq.sandbox.shared_frame import attach, share
from strategyq.settings import SandboxLimits
from tests.unit.ticker_idioms import IDIOMS

SYMBOLS = ["AAPL", "IBM", "MSFT"]
START, END = date(2010, 1, 4), date(2010, 6, 30)
LIMITS = SandboxLimits(time_limit_s=30, memory_mb=1024, answer_max_bytes=1 << 22)


@pytest.fixture(scope="module")
def loaded(data_sample_root: Path) -> pd.DataFrame:
    frame = MarketData(data_sample_root).load(SYMBOLS, START, END).frame
    assert frame["ticker"].dtype == "str"
    return frame


@pytest.fixture(scope="module")
def attached(loaded: pd.DataFrame) -> pd.DataFrame:
    shared = share(loaded)
    try:
        return attach(os.dup(shared.fd))
    finally:
        shared.close()


def _call(code: str, frame: pd.DataFrame) -> Any:
    scope: dict[str, Any] = {"np": np, "pd": pd}
    exec(compile(code, "<strategy>", "exec"), scope)
    return scope["s"](frame.copy(deep=False))


def _sent(value: Any) -> Any:
    """What the parent receives: the answer of a single run, and of a sweep chunk's run."""
    single = result.decode(result.encode_result(value))
    (run,) = result.decode(result.encode_runs([value]))
    return single, run


def test_the_attached_ticker_is_the_str_column_as_loaded(
    loaded: pd.DataFrame, attached: pd.DataFrame
) -> None:
    # The same dtype as loaded (Python-backed `str`), and the same objects: one per
    # ticker, each row pointing at it, so to_numpy() makes no string per row.
    assert attached["ticker"].dtype == loaded["ticker"].dtype == "str"
    assert attached["ticker"].dtype.storage == "python"
    values = attached["ticker"].to_numpy()
    assert all(type(v) is str for v in values)
    assert len({id(v) for v in values}) == len(SYMBOLS)
    assert values.tolist() == loaded["ticker"].tolist()
    pd.testing.assert_frame_equal(
        attached.drop(columns="ticker"), loaded.drop(columns="ticker"), check_exact=True
    )


@pytest.mark.parametrize("name", list(IDIOMS))
def test_string_idioms_give_the_same_answer(
    name: str, loaded: pd.DataFrame, attached: pd.DataFrame
) -> None:
    want = _sent(_call(IDIOMS[name], loaded))
    got = _sent(_call(IDIOMS[name], attached))
    assert want[0], "the strategy returns something, so the comparison means something"
    assert got == want


def test_ticker_values_and_arrays_in_the_answer_travel_as_plain_strings(
    attached: pd.DataFrame,
) -> None:
    last = attached.groupby("ticker").tail(1)
    value = [
        {
            "ticker": last["ticker"].iloc[0],
            "date": last["date"].iloc[0],
            "all": attached["ticker"].unique(),
            "row": last["ticker"],
            "by_ticker": dict(zip(last["ticker"], last["close"], strict=True)),
        }
    ]
    (sent,) = result.decode(result.encode_result(value))
    assert sent["ticker"] == "AAPL" and sent["all"] == SYMBOLS and sent["row"] == SYMBOLS
    assert list(sent["by_ticker"]) == SYMBOLS
    # A returned frame's ticker column travels as a column of strings.
    (columns,) = result.decode(result.encode_runs([last]), keep_columns=True)
    assert columns.columns["ticker"] == SYMBOLS


HOST = """
import socket, sys
from datetime import date
from strategyq.data import MarketData
from strategyq.sandbox import host
from strategyq.sandbox.policy import libraries_from_env
frame = MarketData(sys.argv[2]).load(["AAPL", "IBM", "MSFT"], date(2010, 1, 4),
                                     date(2010, 6, 30)).frame
sock = socket.socket(fileno=int(sys.argv[1]))
servers = host.start_servers(libraries_from_env())
sock.send(b'{"ready": true}')
host.serve(sock, lambda request: (frame, {}), servers, cache_bytes=1 << 26)
"""


@pytest.fixture(scope="module")
def client(data_sample_root: Path) -> Iterator[ForkClient]:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    host = subprocess.Popen(
        [sys.executable, "-c", HOST, str(theirs.fileno()), str(data_sample_root)],
        pass_fds=(theirs.fileno(),),
        # Every idiom here passes the policy and imports no optional library, so
        # each goes to the lean fork server: the full one would only cost its start-up.
        env={**os.environ, "STRATEGYQ_SANDBOX_LIBRARIES": "none"},
    )
    theirs.close()
    assert ours.recv(1024) == b'{"ready": true}'
    try:
        yield ForkClient(ours, spares=False)
    finally:
        ours.close()
        assert host.wait(10) == 0


def test_string_idioms_through_the_sandbox_give_the_in_process_answer(
    client: ForkClient, loaded: pd.DataFrame
) -> None:
    dtype = "def s(df):\n    return [{'ticker': 'A', 'dtype': str(df['ticker'].dtype)}]\n"
    assert client.run(dtype, {"k": 1}, LIMITS)[0] == [{"ticker": "A", "dtype": "str"}]
    for name, code in IDIOMS.items():
        want_single, want_run = _sent(_call(code, loaded))
        single, _ = client.run(code, {"k": 1}, LIMITS)
        (run,), _ = client.run(code, {"k": 1}, LIMITS, runs=[{"params": {}}])
        assert single == want_single, name
        assert run == want_run, name
