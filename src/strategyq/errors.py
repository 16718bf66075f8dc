"""One error hierarchy for strategyq.

Every error a person can see says what happened and what to do. Errors that
end a task carry an ``error_type``: the machine-readable tag written to the
result's ``data.error_type``.
"""

from __future__ import annotations


class StrategyqError(Exception):
    """Base class of every error strategyq raises on purpose."""

    error_type = "internal"


class ConfigError(StrategyqError):
    """Raised when a setting (environment variable, CLI option) is invalid."""

    error_type = "config"


class ConnectionFailed(StrategyqError):
    """Raised when the Redis/Valkey server cannot be reached or refuses the credentials."""

    error_type = "connection"


class ServerError(StrategyqError):
    """Raised when the embedded Valkey server cannot be started or managed."""

    error_type = "server"


class DataError(StrategyqError):
    """Raised when market data is missing, malformed or cannot be stored."""

    error_type = "data"


class ImportRejected(DataError):
    """Raised when an import is refused; ``problems`` lists (file, row, reason)."""

    error_type = "import_rejected"

    def __init__(self, message: str, problems: list[tuple[str, int | None, str]]) -> None:
        super().__init__(message)
        self.problems = problems


class TaskValidationError(StrategyqError):
    """Raised when a task message or producer argument is invalid."""

    error_type = "validation"


class TaskIdInUse(TaskValidationError):
    """Raised when a producer reuses a task id whose record still exists (queued, running,
    or finished within the result TTL)."""

    error_type = "duplicate"

    def __init__(self, task_id: str, status: str) -> None:
        super().__init__(
            f"task not queued: task id {task_id!r} is already in use ({status}); give every "
            "task its own id (a new UUID), or read the existing one's result with "
            "get_task_result"
        )
        self.task_id = task_id
        self.status = status


class TenantQuotaExceeded(TaskValidationError):
    """Raised when a task would take its tenant past one of its quotas (``strategyq tenant
    set``); nothing was queued. ``retry_after_s`` says when trying again may succeed."""

    error_type = "quota_exceeded"

    def __init__(
        self, tenant: str, quota: str, limit: int, used: int, retry_after_s: int, detail: str = ""
    ) -> None:
        super().__init__(quota_message(tenant, quota, limit, used, detail))
        self.tenant = tenant
        self.quota = quota
        self.limit = limit
        self.used = used
        self.retry_after_s = retry_after_s


def quota_message(tenant: str, quota: str, limit: int, used: int, detail: str = "") -> str:
    """What a task refused by a tenant quota is told (producer refusal and error result)."""
    what = {
        "max_queued": f"{used} of its tasks are already queued",
        "max_result_bytes": f"its stored results already take {used} bytes",
        "max_combinations": f"its sweeps have used {used} combinations today (UTC)",
        "max_in_flight": f"{used} of its tasks are running",
    }.get(quota, f"it has used {used}")
    return (
        f"tenant {tenant!r} is over its quota {quota} = {limit}: {what}{detail}. Wait for "
        f"its tasks to finish (or its results to expire), or ask the operator to raise it "
        f"(strategyq tenant set {tenant} --{quota.replace('_', '-')} N)"
    )


class ScheduleNotFound(TaskValidationError):
    """Raised when no schedule has the name asked for."""

    error_type = "not_found"


class ScheduleExists(TaskValidationError):
    """Raised when a schedule is added under a name that is taken."""

    error_type = "duplicate"


class RedisMisconfigured(StrategyqError):
    """Raised at worker start-up when the server's settings would lose tasks silently."""

    error_type = "config"


class EngineError(StrategyqError):
    """Raised when the strategy's instances cannot be turned into a result."""

    error_type = "bad_result"


class SandboxError(StrategyqError):
    """Base of the errors that end a strategy run inside the sandbox."""

    error_type = "sandbox"


class PolicyError(SandboxError):
    """Raised when the strategy source breaks the policy (checked before it runs)."""

    error_type = "policy"

    def __init__(self, message: str) -> None:
        prefix = "Security validation failed: "
        super().__init__(message if message.startswith(prefix) else prefix + message)
        self.findings: tuple[dict[str, object], ...] = ()


class StrategySyntaxError(SandboxError):
    """Raised when the strategy source is not valid Python; the message shows line and caret."""

    error_type = "syntax"

    def __init__(self, message: str, line: int = 0) -> None:
        super().__init__(message)
        self.line = line


class StrategyTimeout(SandboxError):
    """Raised when the strategy ran past its wall-clock or CPU-time limit."""

    error_type = "timeout"


class StrategyMemoryError(SandboxError):
    """Raised when the strategy ran past its memory limit."""

    error_type = "memory"


class ProhibitedOperation(SandboxError):
    """Raised when the strategy tried something the sandbox forbids (file, network, process)."""

    error_type = "prohibited_operation"


class ModuleUnavailable(SandboxError):
    """Raised when the strategy reached an import of a module the sandbox does not provide."""

    error_type = "module_unavailable"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.findings: tuple[dict[str, object], ...] = ()


class SandboxFault(SandboxError):
    """Raised when the sandbox itself refused something the strategy did not ask for (a
    library reading its own data file): a bug of the sandbox, not of the strategy."""

    error_type = "sandbox_error"


class StrategyFailed(SandboxError):
    """Raised when the strategy's own code raised; the message holds its traceback lines."""

    error_type = "strategy_error"


class BadResult(SandboxError):
    """Raised when the strategy returned something that is not a list of JSON-able dicts."""

    error_type = "bad_result"


class SandboxUnavailable(SandboxError):
    """Raised when a required isolation layer cannot be applied on this machine."""

    error_type = "sandbox_unavailable"


class TaskCancelled(StrategyqError):
    """Raised when a running task was cancelled by a client."""

    error_type = "cancelled"


class ArchiveError(StrategyqError):
    """Raised when the run archive cannot do what was asked (see the message for the fix)."""


class ArchiveUnavailable(ArchiveError):
    """Raised when the run archive's database cannot be reached or written; try again later."""


class ArchiveSchemaNewer(ArchiveError):
    """Raised when the archive's schema is newer than this strategyq knows."""


class RunNotFound(ArchiveError):
    """Raised when no archived run has the id asked for."""
