"""The strategy sandbox: the only way user code is ever executed.

``check_policy`` gives friendly errors; ``run`` is the boundary: a fresh child
forked from the calling (warm, secret-free) process, locked down with rlimits,
no_new_privs, dropped capabilities, Landlock and seccomp before any user code
runs, answering with capped, plain JSON. See docs/security.md.
"""

from __future__ import annotations

from strategyq.sandbox.checker import PolicyReport
from strategyq.sandbox.checker import check as check_policy
from strategyq.sandbox.runner import run
from strategyq.sandbox.warm import probe_layers, warm_up

__all__ = ["PolicyReport", "check_policy", "probe_layers", "run", "warm_up"]
