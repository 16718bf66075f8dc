"""The server's connection to the run archive, and its errors as problem documents.

One :class:`ArchiveHandle` per app lives on its :class:`~strategyq.api.state.ApiState`;
``/v1/runs`` and the history page read through it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from strategyq.api.problems import Problem
from strategyq.archive.store import Archive
from strategyq.errors import ArchiveError, ArchiveUnavailable, RunNotFound

T = TypeVar("T")


class ArchiveHandle:
    """The server's connection to the archive, opened (and migrated) on first use."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._archive: Archive | None = None
        self._lock = threading.Lock()

    def get(self) -> Archive:
        with self._lock:
            if self._archive is None:
                try:
                    self._archive = Archive.open(self.url)
                except ArchiveUnavailable as exc:
                    raise Problem(503, str(exc), headers={"Retry-After": "5"}) from None
            return self._archive


def answer(fn: Callable[..., T], *args: Any) -> T:
    """Run an archive read, turning its errors into problem documents."""
    try:
        return fn(*args)
    except RunNotFound as exc:
        raise Problem(404, str(exc)) from None
    except ArchiveUnavailable as exc:
        raise Problem(503, str(exc), headers={"Retry-After": "5"}) from None
    except ArchiveError as exc:
        raise Problem(422, str(exc)) from None
