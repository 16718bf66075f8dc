"""``strategyq serve``: the HTTP API (``/v1``) and the web dashboard, in one process.

It reads and writes Redis only through the producer API and the queue's own
functions, and never runs user code. See ``docs/api.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from strategyq.api.config import ApiConfig

if TYPE_CHECKING:
    from strategyq.api.app import create_app


def __getattr__(name: str) -> Any:
    # The app (FastAPI, the pages, numpy for the charts) loads on first use: `strategyq
    # --help` and the other commands import this package for its config only.
    if name == "create_app":
        from strategyq.api.app import create_app

        return create_app
    raise AttributeError(f"module 'strategyq.api' has no attribute {name!r}")


__all__ = ["ApiConfig", "create_app"]
