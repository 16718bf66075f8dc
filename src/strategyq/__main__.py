"""``python -m strategyq`` is the ``strategyq`` command."""

from strategyq.cli import main

main()
