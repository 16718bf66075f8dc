"""The fork server process (a zygote): ``python -m strategyq.sandbox.zygote SOCKET_FD``.

Started by the sandbox host (:class:`strategyq.sandbox.host.ForkServer`) as a
fresh program, with a minimal environment, ``/`` as its working directory and
no settings. It imports everything a strategy may use, reports the sandbox
layers it found, then serves fork requests (:mod:`strategyq.sandbox.forkserver`).
"""

from __future__ import annotations

import logging
import os
import socket
import sys

import orjson

from strategyq.executor.frames import die_with_parent, ignore_terminal_signals
from strategyq.sandbox.forkserver import serve
from strategyq.sandbox.warm import probe_layers, warm_up
from strategyq.settings import parse_sandbox_libraries
from strategyq.startup import warming_up


def main(argv: list[str]) -> int:
    """Warm up, report the layers, serve until the host closes the socket.

    ``argv``: the socket's descriptor, then the optional libraries to preload
    (comma-separated, ``none`` for none).
    """
    die_with_parent()
    ignore_terminal_signals()
    sock = socket.socket(fileno=int(argv[0]))
    # On the way out the imported modules' objects are parked in the permanent
    # generation, so a child's collector never walks (and so never copies) those
    # shared pages.
    with warming_up():
        warm_up(parse_sandbox_libraries(argv[1]) if len(argv) > 1 else None)
    # The libraries read their settings at import; from here on nothing needs the
    # environment. Emptied once here, a child's lock-down finds nothing to clear.
    os.environ.clear()
    sock.send(orjson.dumps({"ready": True, "layers": probe_layers()}))
    serve(sock)
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="fork server %(levelname)s %(message)s")
    raise SystemExit(main(sys.argv[1:]))
