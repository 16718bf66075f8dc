"""The namespace strategy code runs in: restricted builtins, a guarded import, pd and np.

Part of the policy layer (friendly errors), not of the boundary: with
``check_policy=False`` the code gets the real builtins and only the
operating-system layers stand between it and the machine.
"""

from __future__ import annotations

import builtins
import sys
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any

from strategyq.sandbox import policy, preload


def _guarded_import(
    name: str,
    globals: Mapping[str, object] | None = None,
    locals: Mapping[str, object] | None = None,
    fromlist: Sequence[str] | None = (),
    level: int = 0,
) -> ModuleType:
    # Reached by the strategy's own import statements (already checked against the
    # allow-list) and by C code that imports on first use (datetime → _strptime,
    # time) from the strategy's frame: so any preloaded module is returned, and
    # one that was not preloaded fails naming itself (preload.NotProvided).
    if level != 0:
        raise ImportError("relative imports are not allowed")
    if name not in sys.modules:
        raise preload.NotProvided(f"the sandbox does not provide module '{name}'", name=name)
    return builtins.__import__(name, globals, locals, fromlist, level)


def _one_arg_type(obj: object) -> type:
    return type(obj)


def restricted_builtins() -> dict[str, Any]:
    """The builtins dict of the policy-checked namespace."""
    table: dict[str, Any] = {
        name: getattr(builtins, name) for name in policy.SAFE_BUILTINS if hasattr(builtins, name)
    }
    table["type"] = _one_arg_type
    table["__import__"] = _guarded_import
    return table


def namespace(restricted: bool) -> dict[str, Any]:
    """A fresh globals dict for one strategy run."""
    import numpy as np
    import pandas as pd

    return {
        "__builtins__": restricted_builtins() if restricted else builtins.__dict__,
        "__name__": "strategy",
        "pd": pd,
        "np": np,
    }
