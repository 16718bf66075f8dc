"""``check_strategy``: every policy finding of a strategy, without running it.

One function behind ``strategyq check STRATEGY.py``, ``POST /v1/check`` and the
producers (``submit_task`` and so every ``add_*_task``, the CLI's submit and
``POST /v1/tasks``), so all of them answer the same findings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from strategyq.errors import TaskValidationError


@dataclass(frozen=True)
class CheckResult:
    """What the sandbox's policy says about a strategy.

    Attributes:
        ok: No findings: the strategy would be run.
        entry: The function a run would call (``None`` when none can be picked).
        takes_params: The entry is called as ``entry(df, params)``.
        error_type: What a run would end with when not ``ok``: ``syntax``,
            ``policy`` or ``module_unavailable``.
        findings: One dict per finding: ``kind``, ``line``, ``column``,
            ``message`` and ``fix`` (what to write instead).
        imports: Modules the strategy imports.
    """

    ok: bool
    entry: str | None
    takes_params: bool
    error_type: str | None
    findings: list[dict[str, Any]] = field(default_factory=list)
    imports: list[str] = field(default_factory=list)

    @property
    def message(self) -> str:
        """Every finding, one a line (the text a run's error would carry)."""
        if self.ok:
            return f"ok: the sandbox would call {self.entry}()"
        lines = [
            (f"line {f['line']}: " if f["line"] else "")
            + str(f["message"])
            + (f" — {f['fix']}" if f["fix"] else "")
            for f in self.findings
        ]
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "entry": self.entry,
            "takes_params": self.takes_params,
            "error_type": self.error_type,
            "findings": self.findings,
            "imports": self.imports,
        }


def check_strategy(code: str) -> CheckResult:
    """Check ``code`` against the sandbox's policy; nothing is run.

    Every finding is reported at once, each with its line and what to write
    instead; ``entry`` names the function a run would call.
    """
    from strategyq.sandbox import checker

    review = checker.review(code)
    error_type = review.error().error_type if review.findings else None
    return CheckResult(
        ok=not review.findings,
        entry=review.entry,
        takes_params=review.takes_params,
        error_type=error_type,
        findings=[f.as_dict() for f in review.findings],
        imports=list(review.imports),
    )


class StrategyRejected(TaskValidationError):
    """Raised by a producer when the strategy would be refused by every worker (a syntax
    error or a refused construct); ``error_type`` is ``syntax`` or ``policy``."""

    def __init__(self, result: CheckResult) -> None:
        kind = "syntax error" if result.error_type == "syntax" else "refused by the sandbox"
        super().__init__(f"task not queued: the strategy has a {kind}:\n{result.message}")
        self.error_type = result.error_type or "policy"
        self.findings = result.findings


def require_runnable(code: str) -> None:
    """Refuse, before queueing, a strategy that no worker would run.

    Modules a worker may lack are left to the worker: which optional libraries
    it preloads is its operator's setting, not the producer's.

    Raises:
        StrategyRejected: a syntax error or a refused construct, with every finding.
    """
    result = check_strategy(code)
    if not result.ok and any(f["kind"] != "module_unavailable" for f in result.findings):
        raise StrategyRejected(result)
