"""``run``: a sandbox child of the calling process, started and fed as the fork server's are.

For tests, audits and the start-up self-check: the caller is the warm,
secret-free parent and passes the frame itself instead of a loader.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from strategyq.sandbox import child, result
from strategyq.sandbox.forkclient import checked_program, feed_and_collect, limits_json
from strategyq.sandbox.forkserver import plan_for, spawn
from strategyq.sandbox.runner import defer_reap, reap_finished, reap_now
from strategyq.settings import SandboxLimits

log = logging.getLogger(__name__)


def run(
    code: str,
    df: Any,
    limits: SandboxLimits,
    *,
    check_policy: bool = True,
    cancel_fd: int | None = None,
    insecure_no_sandbox: bool = False,
    landlock_abi_max: int | None = None,
) -> list[dict[str, Any]]:
    """Run a strategy on ``df`` in a fresh locked-down child forked from this process.

    The child is started and fed exactly as the fork server's children are
    (:func:`spawn`, :func:`feed_and_collect`); only the frame comes from the
    caller instead of a loader. This process must be warm (:func:`warm_up`)
    and hold no secrets.

    Args:
        code: The strategy source (one function of one argument).
        df: The frame passed to the strategy; shared with the child by fork, not copied.
        limits: Time, memory, result-size and descriptor limits.
        check_policy: Check the source against the policy and use restricted builtins.
            ``False`` hands the code straight to the operating-system layers (tests, audits).
        cancel_fd: A descriptor that becomes readable to cancel the run (never read here).
        insecure_no_sandbox: Skip Landlock and seccomp (still fork, rlimits, no_new_privs).
        landlock_abi_max: Use at most this Landlock ABI (tests of older kernels).

    Raises:
        PolicyError, StrategyTimeout, StrategyMemoryError, ProhibitedOperation,
        ModuleUnavailable, StrategyFailed, BadResult, SandboxUnavailable, TaskCancelled.
    """
    return run_with_logs(
        code,
        df,
        limits,
        check_policy=check_policy,
        cancel_fd=cancel_fd,
        insecure_no_sandbox=insecure_no_sandbox,
        landlock_abi_max=landlock_abi_max,
    )[0]


def run_with_logs(
    code: str,
    df: Any,
    limits: SandboxLimits,
    *,
    check_policy: bool = True,
    cancel_fd: int | None = None,
    insecure_no_sandbox: bool = False,
    landlock_abi_max: int | None = None,
) -> tuple[list[dict[str, Any]], result.Logs]:
    """:func:`run`, also returning what the strategy printed."""
    reap_finished()
    program = checked_program(code) if check_policy else child.encode_program(code, None, None)
    if insecure_no_sandbox:
        log.warning("running a strategy WITHOUT Landlock and seccomp (insecure_no_sandbox)")
    plan = plan_for(limits_json(limits), not insecure_no_sandbox, landlock_abi_max)
    source_r, source_w = os.pipe()
    result_r, result_w = os.pipe()
    started = time.monotonic()
    try:
        pid = spawn(plan, source_r, result_w, df, restricted=check_policy)
    finally:
        os.close(source_r)
        os.close(result_w)
    return feed_and_collect(
        pid,
        os.pidfd_open(pid),
        source_w,
        result_r,
        program,
        limits,
        started=started,
        cancel_fd=cancel_fd,
        reap=reap_now,
        defer=defer_reap,
    )
