"""``Result.from_archive`` gives the same object as ``Result.from_task`` for one run."""

from __future__ import annotations

import pandas as pd
import pytest
import redis

from strategyq import add_backtest_task
from strategyq.archive.archiver import Archiver, ArchiverConfig
from strategyq.errors import RunNotFound
from strategyq.examples import source
from strategyq.queue import archive_feed
from strategyq.result import Result
from strategyq.settings import Settings
from tests.integration.conftest import Burst


def test_from_archive_is_the_same_result_as_from_task(
    redis_client: redis.Redis, settings: Settings, archive_url: str, burst: Burst
) -> None:
    archive_feed.switch_on(redis_client)
    add_backtest_task(redis_client, "res-1", source("sma_cross"), ["AAPL", "MSFT"],
                      "2008-01-01", "2011-12-31", name="sma cross")  # fmt: skip
    burst(settings)
    arch = Archiver(redis_client, ArchiverConfig(url=archive_url))
    try:
        arch._start()
        while arch.step():
            pass
    finally:
        arch.db.close()
    queued = Result.from_task(redis_client, "res-1")
    archived = Result.from_archive("res-1", url=archive_url)
    assert archived.raw == queued.raw and archived.task_type == "backtest"
    pd.testing.assert_series_equal(archived.metrics, queued.metrics)
    pd.testing.assert_frame_equal(archived.trades, queued.trades)
    assert archived.task_args["name"] == "sma cross"
    with pytest.raises(RunNotFound, match="strategyq runs"):
        Result.from_archive("nope", url=archive_url)
