"""The strategy sandbox: the only way user code is ever executed.

``check_policy`` gives friendly errors; the boundary is a fresh child per run,
started by :func:`strategyq.sandbox.forkserver.spawn` (from the workers' fork
server, or from the calling warm, secret-free process for ``run``), locked down
with rlimits, no_new_privs, dropped capabilities, Landlock and a seccomp
allow-list before any user code runs, answering with capped, plain JSON.
See docs/security.md.
"""

from __future__ import annotations

from strategyq.sandbox.checker import PolicyReport
from strategyq.sandbox.checker import check as check_policy
from strategyq.sandbox.local import run, run_with_logs
from strategyq.sandbox.warm import probe_layers, warm_up

__all__ = ["PolicyReport", "check_policy", "probe_layers", "run", "run_with_logs", "warm_up"]
