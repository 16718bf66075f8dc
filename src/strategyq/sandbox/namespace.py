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

from strategyq.sandbox import policy


def _guarded_import(
    name: str,
    globals: Mapping[str, object] | None = None,
    locals: Mapping[str, object] | None = None,
    fromlist: Sequence[str] | None = (),
    level: int = 0,
) -> ModuleType:
    if level != 0 or name not in policy.ALLOWED_IMPORTS:
        raise PermissionError(f"import of {name!r} is not allowed")
    module = sys.modules.get(name)
    if module is None:
        # Only warmed modules are importable: the lock-down forbids reading files.
        raise PermissionError(f"module {name!r} was not preloaded by the sandbox")
    for item in fromlist or ():
        if item.startswith("_") or item in policy.FORBIDDEN_ATTRIBUTES:
            raise PermissionError(f"importing {item!r} from {name!r} is not allowed")
    return module


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
