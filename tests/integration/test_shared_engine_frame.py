"""Through a real sandbox host: the engine's rows come from the frame the host loaded for
the strategy's child (its sealed memfd, sent with the child's pid), and they are
bit for bit the rows of the executor's own load of the same request."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from strategyq.data import MarketData
from strategyq.engine import market_from_frame
from strategyq.errors import DataError
from strategyq.executor.main import SandboxHost
from strategyq.executor.run import context
from strategyq.executor.run.context import RunContext, SharedLoad, engine_market
from strategyq.settings import Settings

STRATEGY = "def strategy(df):\n    return df[df['close'] > df['sma_20']][['ticker', 'date']]\n"


def _context(home: Path, host: SandboxHost) -> RunContext:
    settings = Settings.from_env({"STRATEGYQ_HOME": str(home)})
    return RunContext(
        market=MarketData(settings.data_dir, cache_mb=0),
        fork=host.fork,
        limits=settings.sandbox,
        stage=lambda _stage: None,
        cancel_fd=None,
        insecure=False,
        max_instances=10_000,
        chunk_size=25,
    )


def test_the_engine_reads_the_hosts_frame_bit_for_bit(
    market_home: Path, sandbox_host: SandboxHost
) -> None:
    ctx = _context(market_home, sandbox_host)
    symbols = (*ctx.market.tickers()[:4], "NOPE")
    request = {
        "symbols": list(symbols),
        "start": "2010-01-01",
        "end": "2012-12-31",
        "adjusted": True,
        "warmup_sessions": 250,
        "lookback_sessions": None,
        "history_sessions": 20,
    }
    context._shared_markets.clear()
    loaded, instances, shape = ctx.strategy_on(STRATEGY, symbols, request, "symbols")
    assert isinstance(loaded, SharedLoad) and loaded.market is not None
    assert loaded.missing == ["NOPE"] and shape[0] == loaded.market.rows
    own = ctx.own_load({**request, "indicators": ["sma_20"]})
    want, got = market_from_frame(own.frame), engine_market(loaded)
    assert got.symbols == want.symbols and len(got.symbols) == 4
    for name in ("starts", "ends", "code", "day", "key", "open", "high", "low", "close"):
        assert np.array_equal(getattr(got, name).view(np.int64), getattr(want, name).view(np.int64))
    assert not got.close.flags.writeable  # the memfd's own pages
    assert len(instances) > 0
    # The same request again: the host's cached memfd, and the engine's view of it reused.
    again, _, _ = ctx.strategy_on(STRATEGY, symbols, request, "symbols")
    assert engine_market(again) is got


def test_a_range_without_sessions_is_the_same_data_error(
    market_home: Path, sandbox_host: SandboxHost
) -> None:
    ctx = _context(market_home, sandbox_host)
    symbols = tuple(ctx.market.tickers()[:2])
    request = {
        "symbols": list(symbols),
        "start": "1971-01-01",
        "end": "1971-02-01",
        "adjusted": True,
        "warmup_sessions": 250,
        "lookback_sessions": None,
        "history_sessions": 0,
    }
    try:
        ctx.strategy_on(STRATEGY, symbols, request, "symbols")
    except DataError as exc:
        message = str(exc)
    else:
        raise AssertionError("no DataError")
    own = ctx.own_load({**request, "indicators": False})
    assert own.frame.empty
    assert message == str(DataError(context.no_data_message(symbols, own, "symbols", ctx.market)))
    assert "no sessions in the range" in message
