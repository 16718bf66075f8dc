"""What every request handler of ``strategyq serve`` shares: settings, clients, limits.

Handlers read the queue through ``view`` (:class:`~strategyq.queue.view.QueueView`)
and write through the producer API and the queue's functions with ``client``; they
read the run archive through ``archive`` (opened on first use).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio
import redis
from anyio import to_thread

from strategyq.api.archive import ArchiveHandle
from strategyq.api.config import ApiConfig
from strategyq.api.followers import Followers
from strategyq.api.metrics import ApiMetrics
from strategyq.api.record_cache import RecordCache
from strategyq.queue.view import QueueView
from strategyq.settings import Settings

T = TypeVar("T")


@dataclass
class ApiState:
    settings: Settings
    config: ApiConfig
    client: redis.Redis
    metrics: ApiMetrics = field(default_factory=ApiMetrics)
    _limiter: anyio.CapacityLimiter | None = None
    view: QueueView = field(init=False)
    followers: Followers = field(init=False)
    records: RecordCache = field(default_factory=RecordCache)
    archive: ArchiveHandle = field(init=False)

    def __post_init__(self) -> None:
        self.view = QueueView(self.client, self.settings.queue_name)
        tenancy = self.view.tenancy
        self.metrics.watch_tenancy(lambda: (tenancy.lanes(), tenancy.tenants()))
        self.followers = Followers(self.config.max_followers)
        self.archive = ArchiveHandle(
            self.settings.archive_db_url, explicit=bool(self.settings.archive_url)
        )

    @property
    def queue(self) -> str:
        return self.settings.queue_name

    @property
    def market_dir(self) -> Path:
        return Path(self.config.market_dir) if self.config.market_dir else self.settings.data_dir

    async def blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a call that blocks on Redis (BLPOP) in the bounded pool kept for waiting.

        Long-polls and event streams each hold a thread while they wait; a pool
        of their own keeps them from starving the threads ordinary requests use.
        """
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.config.blocking_threads)
        return await to_thread.run_sync(fn, *args, limiter=self._limiter)
