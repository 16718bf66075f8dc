"""The sandbox host: market data and warm pandas, forking one sandbox child per task.

Started by each executor (``python -m strategyq.executor.sandbox_host``) with
the executor's own minimal environment and the worker's settings. It loads
and caches the frames strategies run on and forks their children (see
:mod:`strategyq.sandbox.forkserver`), but never receives a strategy's source
or its answer, so a child's copy of this process's memory holds nothing but
public market data.
"""

from __future__ import annotations

import gc
import logging
import socket
import sys
from typing import Any

import orjson

from strategyq.executor.frames import die_with_parent, ignore_terminal_signals
from strategyq.settings import Settings

log = logging.getLogger(__name__)


def main(argv: list[str]) -> int:
    """``python -m strategyq.executor.sandbox_host SOCKET_FD SETTINGS_JSON``."""
    from strategyq import sandbox
    from strategyq.data import MarketData
    from strategyq.data.cache import LRUCache
    from strategyq.sandbox import forkserver

    die_with_parent()
    ignore_terminal_signals()
    sock = socket.socket(fileno=int(argv[0]))
    settings = Settings.from_child_json(argv[1])
    market = MarketData(settings.data_dir, cache_mb=settings.data_cache_mb)
    libraries = settings.sandbox_libraries
    # Nothing a child could walk to should name the data directory (or anything else
    # of the host's): the settings and the command line go.
    del settings
    argv.clear()
    sys.argv[1:] = []
    sys.orig_argv[:] = sys.orig_argv[:1]
    sandbox.warm_up(libraries)
    # Park the imported modules' objects in the permanent generation, so a child's
    # collector never walks (and so never copies) those shared pages. Only what exists
    # now: frames cached later must stay collectable when the cache evicts them.
    gc.freeze()
    sock.send(orjson.dumps({"ready": True, "layers": sandbox.probe_layers()}))

    def load(request: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        loaded = market.load(
            request["symbols"],
            request["start"],
            request["end"],
            adjusted=bool(request["adjusted"]),
            warmup_sessions=int(request["warmup_sessions"]),
            lookback_sessions=request["lookback_sessions"],
            history_sessions=int(request.get("history_sessions", 0)),
        )
        return loaded.frame, {"shape": list(loaded.frame.shape)}

    def forget() -> None:
        # In each child, before lock-down: make every cached frame (other tasks'
        # requests and data) and the store unreachable, keeping only the frame
        # just loaded. Freeing them would cost a deallocation of each (copying
        # the pages it touches); instead the old cache is parked in a cycle that
        # nothing reaches, and gc.freeze() moves it out of what gc.get_objects()
        # and gc.get_referrers() can see. The child exits soon; nothing leaks.
        stale: list[object] = [market.cache, market.store]
        stale.append(stale)
        market.cache = LRUCache(0)
        market.store = None  # type: ignore[assignment]
        del stale
        gc.freeze()

    forkserver.serve(sock, load, forget)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="sandbox host %(levelname)s %(message)s")
    raise SystemExit(main(sys.argv[1:]))
