"""The few finished results this server decoded last, and what their pages derived from them.

A sweep's result can be megabytes (ten thousand combinations with their
metrics): decoding it and ranking, flattening and gridding its rows for every
page view would cost far more than the page itself. A finished result changes
only when the task runs again, which writes a new finish time into the
recent-task index; so an entry is reused while that time is unchanged, and
read again when it moved (or when the index no longer holds the task).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

SIZE = 4
"""Results kept (the largest are a few tens of MB decoded)."""


@dataclass
class Entry:
    finished_ms: int
    record: dict[str, Any]
    derived: dict[Any, Any] = field(default_factory=dict)
    """Rows, grids and figures computed from the record, by what they were asked with."""


class RecordCache:
    """An LRU of :class:`Entry` by task id; safe to share between request threads."""

    def __init__(self, size: int = SIZE) -> None:
        self._size = size
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, task_id: str, finished_ms: int | None) -> Entry | None:
        if finished_ms is None:
            return None
        with self._lock:
            entry = self._entries.get(task_id)
            if entry is None or entry.finished_ms != finished_ms:
                return None
            self._entries.move_to_end(task_id)
            return entry

    def put(self, task_id: str, finished_ms: int, record: dict[str, Any]) -> Entry:
        entry = Entry(finished_ms, record)
        with self._lock:
            self._entries[task_id] = entry
            self._entries.move_to_end(task_id)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
        return entry
