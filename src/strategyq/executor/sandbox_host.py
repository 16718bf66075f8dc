"""The sandbox host process: market data, and fork servers that fork one sandbox child per task.

Started by each executor (``python -m strategyq.executor.sandbox_host``) with
the executor's own minimal environment and the worker's settings. It loads
the frames strategies run on and hands each to its child as a sealed memfd
(see :mod:`strategyq.sandbox.host`); the children are forked by the fork
servers it starts (a lean one, and a full one with the optional libraries when
any is configured), which hold no data (:mod:`strategyq.sandbox.forkserver`).
It never receives a strategy's source or its answer.
"""

from __future__ import annotations

import logging
import socket
import sys
from typing import Any

import orjson

from strategyq.executor.frames import die_with_parent, ignore_terminal_signals
from strategyq.settings import Settings
from strategyq.startup import warming_up

log = logging.getLogger(__name__)

NOTES_MAX_BYTES = 256 * 1024
"""A load's notes (missing and empty tickers) travel with the child's reply up to this
size; above it the executor loads its own copy of the frame, as it does without them."""


def main(argv: list[str]) -> int:
    """``python -m strategyq.executor.sandbox_host SOCKET_FD SETTINGS_JSON``."""
    from strategyq.sandbox import host

    die_with_parent()
    ignore_terminal_signals()
    sock = socket.socket(fileno=int(argv[0]))
    settings = Settings.from_child_json(argv[1])
    # The fork servers warm up while this process loads the market data store (pandas,
    # pyarrow), which serves the first task's frame.
    starting = host.launch_servers(settings.sandbox_libraries)
    with warming_up():
        from strategyq.data import MarketData

        servers = host.wait_servers(starting)
        # The host keeps its frames as sealed memfds (the fork server's children map
        # them); the store's own cache of frames would hold each a second time.
        market = MarketData(settings.data_dir, cache_mb=0)
    # The worker requires the canary: reported as held only if every server's canary passed.
    layers = host.layers_of(servers)
    each = {name: server.layers for name, server in servers.items()}
    sock.send(orjson.dumps({"ready": True, "layers": layers, "servers": each}))

    def load(request: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        loaded = market.load(
            request["symbols"],
            request["start"],
            request["end"],
            adjusted=bool(request["adjusted"]),
            warmup_sessions=int(request["warmup_sessions"]),
            lookback_sessions=request["lookback_sessions"],
            history_sessions=int(request.get("history_sessions", 0)),
            indicators=request.get("indicators", True),
        )
        meta: dict[str, Any] = {"shape": list(loaded.frame.shape)}
        # What the executor's engine needs besides the frame's rows (its notes and
        # errors), so it can use this frame's memfd instead of loading its own copy.
        notes = {
            "missing": loaded.missing,
            "empty": loaded.empty,
            "ranges": {t: [d.isoformat() for d in loaded.ranges[t]] for t in loaded.empty},
        }
        if len(orjson.dumps(notes)) <= NOTES_MAX_BYTES:
            meta["load"] = notes
        return loaded.frame, meta

    host.serve(sock, load, servers, cache_bytes=settings.data_cache_mb * 1024 * 1024)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="sandbox host %(levelname)s %(message)s")
    raise SystemExit(main(sys.argv[1:]))
