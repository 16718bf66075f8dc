"""Parameter sweeps and walk-forward analysis.

- :mod:`~strategyq.sweep.grid`: the parameter grid, its constraint and size cap;
- :mod:`~strategyq.sweep.constraint`: the safe constraint parser (no eval);
- :mod:`~strategyq.sweep.folds`: walk-forward training and test windows;
- :mod:`~strategyq.sweep.rank`: the ranking, its tie rule, the heatmap;
- :mod:`~strategyq.sweep.assemble`: the fan-in (pure: JSON in, the result out).

The executor's side (plan a sweep, run one chunk) is
:mod:`strategyq.executor.run.sweep`; the queue's side is :mod:`strategyq.queue.sweeps`.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any


class _SweepPackage(types.ModuleType):
    """This package, callable: ``strategyq.sweep(...)`` runs a sweep here.

    ``strategyq.sweep`` is both this package (the pure maths) and the local-run
    function users call; the import system makes the attribute the package once a
    submodule is imported, so the package itself forwards calls to
    :func:`strategyq.local.sweep`.
    """

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # Looked up at call time: the pure maths never depends on local runs (which
        # use strategyq.sweep.assemble), only this forwarding call does.
        return importlib.import_module("strategyq.local").sweep(*args, **kwargs)


sys.modules[__name__].__class__ = _SweepPackage
