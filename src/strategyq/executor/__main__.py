"""``python -m strategyq.executor``: the executor process."""

from __future__ import annotations

import logging
import sys

from strategyq.executor.main import main

if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="executor %(levelname)s %(message)s")
    raise SystemExit(main(sys.argv[1:]))
