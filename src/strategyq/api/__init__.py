"""``strategyq serve``: the HTTP API (``/v1``) and the web dashboard, in one process.

It reads and writes Redis only through the producer API and the queue's own
functions, and never runs user code. See ``docs/api.md``.
"""

from __future__ import annotations

from strategyq.api.app import create_app
from strategyq.api.config import ApiConfig

__all__ = ["ApiConfig", "create_app"]
