"""The namespace strategy code runs in: the builtins less a few, a guarded import, pd and np.

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

from strategyq.errors import PolicyError
from strategyq.sandbox import policy, preload


def _guarded_import(
    name: str,
    globals: Mapping[str, object] | None = None,
    locals: Mapping[str, object] | None = None,
    fromlist: Sequence[str] | None = (),
    level: int = 0,
) -> ModuleType:
    # Reached by the strategy's own import statements (already checked) and by C code
    # that imports on first use (datetime → _strptime, time) from the strategy's frame:
    # so any preloaded module is returned, and one that was not preloaded fails naming
    # itself (preload.NotProvided).
    if level != 0:
        raise ImportError("relative imports are not allowed")
    if name not in sys.modules:
        raise preload.NotProvided(f"the sandbox does not provide module '{name}'", name=name)
    return builtins.__import__(name, globals, locals, fromlist, level)


def _refuse_internal(name: object) -> None:
    if isinstance(name, str) and name in policy.INTERNAL_DUNDERS:
        raise PolicyError(
            f"the attribute name '{name}' reaches the interpreter's internals; "
            "name ordinary attributes only"
        )


def _getattr(obj: object, name: str, *default: object) -> Any:
    _refuse_internal(name)
    return getattr(obj, name, *default)


def _hasattr(obj: object, name: str) -> bool:
    _refuse_internal(name)
    return hasattr(obj, name)


def _setattr(obj: object, name: str, value: object) -> None:
    _refuse_internal(name)
    setattr(obj, name, value)


def _delattr(obj: object, name: str) -> None:
    _refuse_internal(name)
    delattr(obj, name)


_GUARDED = {
    "getattr": _getattr,
    "hasattr": _hasattr,
    "setattr": _setattr,
    "delattr": _delattr,
    "__import__": _guarded_import,
}


def restricted_builtins() -> dict[str, Any]:
    """The builtins dict of the policy-checked namespace.

    Every builtin (all exception and warning classes, ``object``, ``super``,
    ``property``, ``__build_class__`` for class statements) but those of
    :data:`policy.REFUSED_BUILTINS`; attribute access by computed name refuses
    the interpreter's internals at run time, as the checker does in the source.
    """
    table = {
        name: value
        for name, value in vars(builtins).items()
        if name not in policy.REFUSED_BUILTINS
        and not (name.startswith("__") and name != "__build_class__")
    }
    table.update(_GUARDED)
    return table


MODULE_NAME = "strategy"
"""The strategy's module name (``__name__``; never ``"__main__"``)."""


def namespace(restricted: bool) -> dict[str, Any]:
    """A fresh globals dict for one strategy run: a module's, registered in
    ``sys.modules`` as the classes it defines say (``cls.__module__``), which
    ``dataclasses``, ``typing`` and ``enum`` look up."""
    import numpy as np
    import pandas as pd

    module = ModuleType(MODULE_NAME)
    scope = module.__dict__
    scope.update(
        {
            "__builtins__": restricted_builtins() if restricted else builtins.__dict__,
            "pd": pd,
            "np": np,
        }
    )
    sys.modules[MODULE_NAME] = module
    return scope
