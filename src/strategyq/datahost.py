"""The sandbox host: market data and warm pandas, forking one sandbox child per task.

Started by each executor (``python -m strategyq.datahost``) with the
executor's own minimal environment. It loads and caches the frames
strategies run on and forks their children (see
:mod:`strategyq.sandbox.forkserver`), but never receives a strategy's source
or its answer, so a child's copy of this process's memory holds nothing but
public market data.
"""

from __future__ import annotations

import gc
import logging
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import orjson

from strategyq.executor import die_with_parent

log = logging.getLogger(__name__)


def main(argv: list[str]) -> int:
    from strategyq import sandbox
    from strategyq.data import MarketData
    from strategyq.sandbox import forkserver

    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sock = socket.socket(fileno=int(argv[0]))
    config = orjson.loads(argv[1])
    market = MarketData(Path(config["data_dir"]), cache_mb=int(config["data_cache_mb"]))
    # Nothing a child could walk to should name the data directory (or anything else
    # of the host's): the command line goes, the config too.
    del config
    argv.clear()
    sys.argv[1:] = []
    sys.orig_argv[:] = sys.orig_argv[:1]
    sandbox.warm_up()
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
        )
        return loaded.frame, {"shape": list(loaded.frame.shape)}

    def forget() -> None:
        # In each child, before lock-down: drop every cached frame (other tasks'
        # requests and data) and the store, keeping only the frame just loaded.
        market.cache.clear()
        market.store = None  # type: ignore[assignment]
        gc.collect()

    forkserver.serve(sock, load, forget)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="datahost %(levelname)s %(message)s")
    raise SystemExit(main(sys.argv[1:]))
