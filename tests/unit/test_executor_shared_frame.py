"""The executor's engine reads the sandbox host's sealed memfd only when it is safe and exact.

It maps the memfd read-only after checking its seals (an unsealed or writable
one is refused), and the market it builds from it is bit for bit the market
built from the executor's own load of the same request; any frame it cannot
use means a load of its own (``shared_load`` answers None).
"""

from __future__ import annotations

import fcntl
import json
import mmap
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from strategyq.data import LoadResult, MarketData, write_synthetic
from strategyq.engine import market_from_frame
from strategyq.engine.market import Market
from strategyq.executor.run import context
from strategyq.executor.run.context import ENGINE_BARS, SharedLoad, shared_load, shared_market
from strategyq.sandbox.shared_frame import FrameRefused, SealedFrame, SharedFrame, share

FIELDS = ("starts", "ends", "code", "day", "key", "open", "high", "low", "close")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("shared-engine-frame") / "data"
    write_synthetic(root, 7, 2, seed=11)
    return root


def _request(market: MarketData) -> dict[str, Any]:
    return {
        "symbols": [*market.tickers(), "NOPE"],
        "start": "2024-03-01",
        "end": "2024-12-31",
        "adjusted": True,
        "warmup_sessions": 250,
        "lookback_sessions": None,
        "history_sessions": 30,
    }


def _load(market: MarketData, r: dict[str, Any], **kwargs: Any) -> LoadResult:
    return market.load(
        r["symbols"],
        r["start"],
        r["end"],
        adjusted=r["adjusted"],
        warmup_sessions=r["warmup_sessions"],
        lookback_sessions=None,
        history_sessions=r["history_sessions"],
        **kwargs,
    )


def _bit_for_bit(a: Market, b: Market) -> None:
    assert a.symbols == b.symbols
    for name in FIELDS:
        left, right = getattr(a, name), getattr(b, name)
        assert left.dtype == right.dtype and left.shape == right.shape, name
        # Compared as their bits: a NaN price equals itself, -0.0 differs from 0.0.
        assert np.array_equal(left.view(np.int64), right.view(np.int64)), name


def _host_meta(loaded: LoadResult) -> dict[str, Any]:
    """The meta the sandbox host sends with a child's pid (executor/sandbox_host.py)."""
    frame = loaded.frame
    return {
        "shape": list(frame.shape),
        "load": {
            "missing": loaded.missing,
            "empty": loaded.empty,
            "ranges": {t: [d.isoformat() for d in loaded.ranges[t]] for t in loaded.empty},
        },
    }


@pytest.mark.parametrize("indicators", [False, ("sma_20", "rsi"), True])
def test_the_hosts_frame_makes_the_executors_market_bit_for_bit(
    store: Path, indicators: bool | tuple[str, ...]
) -> None:
    market = MarketData(store, cache_mb=0)
    request = _request(market)
    own = _load(market, request, indicators=False, bar_columns=ENGINE_BARS)
    host = _load(market, request, indicators=indicators)
    context._shared_markets.clear()
    shared = share(host.frame)
    try:
        got = shared_load(_host_meta(host), shared)
    finally:
        shared.close()
    assert isinstance(got, SharedLoad) and got.market is not None
    _bit_for_bit(market_from_frame(own.frame), got.market)
    assert context.engine_market(got) is got.market
    assert (got.missing, got.empty) == (own.missing, own.empty)
    assert got.missing == ["NOPE"] and got.ranges == {}
    # The engine reads the memfd's pages themselves: no copy, and nothing writes them.
    assert not got.market.close.flags.writeable
    with pytest.raises(ValueError, match="read-only"):
        got.market.close[0] = 1.0


def test_a_small_frame_asked_for_again_reuses_its_market(store: Path) -> None:
    market = MarketData(store, cache_mb=0)
    host = _load(market, _request(market), indicators=False)
    context._shared_markets.clear()
    shared = share(host.frame)
    try:
        first = shared_market(shared)
        again = SharedFrame(os.dup(shared.fd), shared.size)  # the host sends the same memfd
        assert first is not None and shared_market(again) is first
        again.close()
        # Another memfd with the same rows is another frame: built anew, equal.
        other = share(host.frame)
        rebuilt = shared_market(other)
        other.close()
        assert rebuilt is not None and rebuilt is not first
        _bit_for_bit(first, rebuilt)
    finally:
        shared.close()
        context._shared_markets.clear()


def test_a_large_memfd_is_not_kept_for_reuse(store: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The memo's mapping would keep the memfd alive after the host's cache let it go.
    market = MarketData(store, cache_mb=0)
    host = _load(market, _request(market), indicators=True)
    context._shared_markets.clear()
    shared = share(host.frame)
    monkeypatch.setattr(context, "SHARED_MEMO_MAX_BYTES", shared.size - 1)
    try:
        first = shared_market(shared)
        assert first is not None and not context._shared_markets
        again = shared_market(shared)
        assert again is not None and again is not first
        _bit_for_bit(first, again)
    finally:
        shared.close()


def _copy_to_memfd(shared: SharedFrame, seals: int) -> SharedFrame:
    """The same bytes as ``shared`` in a new memfd carrying only ``seals``."""
    fd = os.memfd_create("not-sealed", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    with mmap.mmap(shared.fd, shared.size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ) as src:
        os.write(fd, src[:])
    if seals:
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
    return SharedFrame(fd, shared.size)


@pytest.mark.parametrize(
    "seals",
    [
        0,
        # Everything but the write seal: a process could still change the prices.
        fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL,
        # Writes sealed, but the seals may be changed and the file shrunk.
        fcntl.F_SEAL_WRITE,
    ],
)
def test_an_unsealed_or_writable_memfd_is_refused(store: Path, seals: int) -> None:
    market = MarketData(store, cache_mb=0)
    host = _load(market, _request(market), indicators=False)
    shared = share(host.frame)
    loose = _copy_to_memfd(shared, seals)
    context._shared_markets.clear()
    try:
        # The same bytes, sealed, are accepted: only the seals differ.
        SealedFrame.open(shared.fd)
        with pytest.raises(FrameRefused, match="not sealed"):
            SealedFrame.open(loose.fd)
        assert shared_market(loose) is None
        assert shared_load(_host_meta(host), loose) is None
    finally:
        loose.close()
        shared.close()


def test_a_descriptor_that_is_not_a_memfd_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "frame"
    path.write_bytes(b"SQF1" + bytes(60))
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(FrameRefused):
            SealedFrame.open(fd)
    finally:
        os.close(fd)


def _shared(frame: pd.DataFrame) -> SharedFrame:
    return share(frame.reset_index(drop=True))


def test_frames_the_engine_cannot_read_fall_back_to_the_executors_own_load(store: Path) -> None:
    market = MarketData(store, cache_mb=0)
    host = _load(market, _request(market), indicators=False)
    frame = host.frame
    meta = _host_meta(host)
    context._shared_markets.clear()
    unusable = {
        "no open column": frame.drop(columns=["open"]),
        "dates in microseconds": frame.assign(date=frame["date"].astype("datetime64[us]")),
        "prices as float32": frame.assign(close=frame["close"].astype("float32")),
        "unsorted rows": frame.iloc[::-1],
        "a repeated session": pd.concat([frame.iloc[:1], frame]),
    }
    for why, bad in unusable.items():
        shared = _shared(bad)
        try:
            rows_meta = {**meta, "shape": [len(bad), bad.shape[1]]}
            assert shared_load(rows_meta, shared) is None, why
        finally:
            shared.close()
    good = share(frame)
    try:
        # No notes from the host (an older host, or notes too large), or no memfd.
        assert shared_load({"shape": meta["shape"]}, good) is None
        assert shared_load(meta, None) is None
        # Rows the host's notes do not count.
        assert shared_load({**meta, "shape": [len(frame) - 1, 8]}, good) is None
    finally:
        good.close()


def test_an_empty_shared_frame_gives_the_loads_notes_for_the_data_error(store: Path) -> None:
    market = MarketData(store, cache_mb=0)
    request = {**_request(market), "start": "2040-01-01", "end": "2040-02-01"}
    host = _load(market, request, indicators=False)
    own = _load(market, request, indicators=False, bar_columns=ENGINE_BARS)
    shared = share(host.frame)
    try:
        got = shared_load(_host_meta(host), shared)
    finally:
        shared.close()
    assert got is not None and got.frame.empty and not isinstance(got, SharedLoad)
    assert (got.missing, got.empty) == (own.missing, own.empty)
    # The stored range of each ticker with no session in the request, for its message.
    assert got.empty and got.ranges == {t: own.ranges[t] for t in own.empty}


def _header(shared: SharedFrame) -> tuple[dict[str, Any], int]:
    with mmap.mmap(shared.fd, shared.size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ) as m:
        length = int.from_bytes(m[4:8], "big")
        header = json.loads(m[8 : 8 + length])
    return header, (8 + length + 63) // 64 * 64


def test_the_ticker_travels_as_codes_and_arrow_strings_give_the_same_market(
    store: Path,
) -> None:
    market = MarketData(store, cache_mb=0)
    host = _load(market, _request(market), indicators=False)
    assert host.frame["ticker"].dtype.storage == "python"
    coded = share(host.frame)
    arrow_str = pd.StringDtype("pyarrow", na_value=np.nan)
    arrow = _shared(host.frame.assign(ticker=host.frame["ticker"].astype(arrow_str)))
    context._shared_markets.clear()
    try:
        header, _ = _header(coded)
        (ticker,) = [c for c in header["columns"] if c["name"] == "ticker"]
        assert ticker["encoding"] == "dictionary"
        assert ticker["dictionary_length"] == host.frame["ticker"].nunique()
        assert "encoding" not in _header(arrow)[0]["columns"][0]
        from_codes = shared_market(coded)
        context._shared_markets.clear()
        from_strings = shared_market(arrow)
        assert from_codes is not None and from_strings is not None
        _bit_for_bit(from_codes, from_strings)
        assert from_codes.symbols == from_strings.symbols == sorted(set(host.frame["ticker"]))
    finally:
        coded.close()
        arrow.close()


def test_a_ticker_code_outside_its_dictionary_is_refused(store: Path) -> None:
    market = MarketData(store, cache_mb=0)
    host = _load(market, _request(market), indicators=False)
    shared = share(host.frame)
    header, base = _header(shared)
    (ticker,) = [c for c in header["columns"] if c["name"] == "ticker"]
    offset = base + ticker["buffers"][0][0]
    fd = os.memfd_create("bad-codes", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    with mmap.mmap(shared.fd, shared.size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ) as src:
        data = bytearray(src[:])
    data[offset : offset + 4] = (ticker["dictionary_length"] + 5).to_bytes(4, "little")
    os.write(fd, bytes(data))
    fcntl.fcntl(
        fd,
        fcntl.F_ADD_SEALS,
        fcntl.F_SEAL_SEAL | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_WRITE,
    )
    bad = SharedFrame(fd, shared.size)
    context._shared_markets.clear()
    try:
        with pytest.raises(FrameRefused, match="malformed"):
            SealedFrame.open(bad.fd).strings("ticker")
        assert shared_market(bad) is None
    finally:
        bad.close()
        shared.close()
