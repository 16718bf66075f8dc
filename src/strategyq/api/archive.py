"""The server's connection to the run archive, and its errors as problem documents.

One :class:`ArchiveHandle` per app lives on its :class:`~strategyq.api.state.ApiState`;
``/v1/runs`` and the history page read through it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from strategyq.api.problems import Problem
from strategyq.errors import ArchiveError, ArchiveUnavailable, RunNotFound

if TYPE_CHECKING:
    # Imported where it is opened: a server whose archive no request reads starts
    # without the archive's modules and sqlite3.
    from strategyq.archive.store import Archive

T = TypeVar("T")


class ArchiveHandle:
    """The server's connection to the archive, opened (and migrated) on first use.

    Args:
        url: the archive's database.
        explicit: the URL was configured (``STRATEGYQ_ARCHIVE_URL``), not the default.
    """

    def __init__(self, url: str, *, explicit: bool = True) -> None:
        self.url = url
        self.explicit = explicit
        self._archive: Archive | None = None
        self._lock = threading.Lock()

    @property
    def configured(self) -> bool:
        """Whether there is an archive to read: a configured URL, or the default SQLite file
        once an archiver has made it. The pages that fall back to the archive for runs
        Redis no longer holds ask this first, so a server without an archive never creates
        an empty one."""
        if self.explicit:
            return True
        parts = urlsplit(self.url)
        return parts.scheme != "sqlite" or Path(parts.path).is_file()

    def record(self, task_id: str) -> dict[str, Any] | None:
        """The archived result record of ``task_id``, or None (not archived, or no archive).

        Raises:
            Problem: 503 when the archive is configured but cannot be read now.
        """
        if not self.configured:
            return None
        archive = self.get()
        try:
            return archive.result(task_id)
        except RunNotFound:
            return None
        except ArchiveUnavailable as exc:
            raise Problem(503, str(exc), headers={"Retry-After": "5"}) from None

    def run(self, task_id: str) -> dict[str, Any] | None:
        """The archived run's summary, args and source (None as for :meth:`record`)."""
        if not self.configured:
            return None
        try:
            return self.get().run(task_id)
        except RunNotFound:
            return None
        except ArchiveUnavailable as exc:
            raise Problem(503, str(exc), headers={"Retry-After": "5"}) from None

    def get(self) -> Archive:
        with self._lock:
            if self._archive is None:
                from strategyq.archive.store import Archive

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
