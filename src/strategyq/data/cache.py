"""A byte-bounded LRU cache of loaded frames, shared by the threads of one process."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from pathlib import Path
from typing import Generic, TypeVar

V = TypeVar("V")


class LRUCache(Generic[V]):
    """Keeps the most recently used values whose sizes add up to at most ``max_bytes``.

    Args:
        max_bytes: The budget; a value larger than the whole budget is not kept.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[Hashable, tuple[V, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> V | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return item[0]

    def put(self, key: Hashable, value: V, size: int) -> None:
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            self._items[key] = (value, size)
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, (_, evicted) = self._items.popitem(last=False)
                self._bytes -= evicted

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0

    @property
    def used_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)


AUTO_SHARE = 8
"""The automatic frame cache budget is this fraction (1/N) of the memory available."""
AUTO_MIN_MB = 64
AUTO_MAX_MB = 16 * 1024


def auto_cache_mb(
    meminfo: Path = Path("/proc/meminfo"), cgroup: Path = Path("/sys/fs/cgroup")
) -> int:
    """A frame cache budget sized to this machine: an eighth of the memory available.

    Available memory is the smaller of the kernel's ``MemAvailable`` and the room left
    under the cgroup (container) limit, so a container's cache is sized to the
    container. The result is bounded to ``AUTO_MIN_MB..AUTO_MAX_MB``.
    """
    available: list[int] = []
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available.append(int(line.split()[1]) * 1024)
                break
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = (cgroup / "memory.max").read_text().strip()
        if limit != "max":
            used = int((cgroup / "memory.current").read_text().strip())
            available.append(max(int(limit) - used, 0))
    except (OSError, ValueError):
        pass
    if not available:
        return 1024
    mb = min(available) // AUTO_SHARE // (1024 * 1024)
    return int(min(max(mb, AUTO_MIN_MB), AUTO_MAX_MB))
