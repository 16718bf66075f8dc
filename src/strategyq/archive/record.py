"""One run as the archive stores it: built from what Redis holds, and read back.

The full result record is kept compressed (zlib), so a result of any size fits a
row; the columns beside it are what searches filter on.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass, field
from typing import Any

import orjson

from strategyq.archive.schema import METRICS
from strategyq.protocol.results import TERMINAL_STATUSES

COMPRESS_LEVEL = 6


class NotARun(ValueError):
    """Raised when a Redis record is not a strategyq terminal result (corrupt or foreign)."""


def fingerprint(code: str) -> str:
    """The strategy's fingerprint: the first 16 hex digits of the SHA-256 of its source,
    with line endings and trailing whitespace normalised (an editor's save is the same
    version)."""
    lines = [line.rstrip() for line in code.replace("\r\n", "\n").split("\n")]
    text = "\n".join(lines).strip("\n")
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


@dataclass
class ArchivedRun:
    """A row of ``runs`` and of its child tables."""

    task_id: str
    task_type: str
    status: str
    finished_ms: int
    result: dict[str, Any]
    raw_result: bytes
    task: dict[str, Any] | None
    metrics: dict[str, float | None] = field(default_factory=dict)

    @property
    def args(self) -> dict[str, Any]:
        args = (self.task or {}).get("args")
        return args if isinstance(args, dict) else {}

    @property
    def code(self) -> str | None:
        code = self.args.get("strategy_code")
        return code if isinstance(code, str) else None

    @property
    def name(self) -> str | None:
        name = self.args.get("name")
        return name if isinstance(name, str) else None

    @property
    def tags(self) -> list[str]:
        tags = self.args.get("tags")
        return sorted({t for t in tags if isinstance(t, str)}) if isinstance(tags, list) else []

    @property
    def symbols(self) -> list[str]:
        for key in ("symbols", "universe"):
            value = self.args.get(key)
            if isinstance(value, list):
                return sorted({str(s).upper() for s in value if isinstance(s, str)})
            if isinstance(value, str):
                return sorted({s.strip().upper() for s in value.split(",") if s.strip()})
        return []

    def combinations(self) -> list[tuple[int, int | None, str, list[float | None]]]:
        """A completed sweep's ranked combinations: (rank, index, params JSON, metrics)."""
        data = self.result.get("data") or {}
        rows = data.get("results") if isinstance(data, dict) else None
        out = []
        for row in rows if isinstance(rows, list) else []:
            if not isinstance(row, dict) or not isinstance(row.get("rank"), int):
                continue
            found = row.get("metrics")
            metrics: dict[str, Any] = found if isinstance(found, dict) else {}
            index = row.get("index") if isinstance(row.get("index"), int) else None
            out.append(
                (
                    row["rank"],
                    index,
                    orjson.dumps(row.get("params")).decode(),
                    [_num(metrics.get(m)) for m in METRICS],
                )
            )
        return out

    def row(self, archived_ms: int) -> tuple[Any, ...]:
        """The ``runs`` row, in the column order of :data:`RUN_COLUMNS`."""
        data = self.result.get("data")
        data = data if isinstance(data, dict) else {}
        code = self.code
        error = data.get("error") if self.status == "error" else None
        return (
            self.task_id,
            self.task_type,
            self.status,
            self.finished_ms,
            archived_ms,
            self.name,
            orjson.dumps(self.tags).decode() if self.tags else None,
            fingerprint(code) if code is not None else None,
            code,
            orjson.dumps(self.args).decode() if self.task is not None else None,
            ",".join(self.symbols) or None,
            data.get("error_type") if self.status == "error" else None,
            str(error)[:4000] if error is not None else None,
            *(self.metrics.get(m) for m in METRICS),
            len(self.raw_result),
            zlib.compress(self.raw_result, COMPRESS_LEVEL),
        )


RUN_COLUMNS: tuple[str, ...] = (
    "task_id",
    "task_type",
    "status",
    "finished_ms",
    "archived_ms",
    "name",
    "tags",
    "fingerprint",
    "strategy_code",
    "args",
    "symbols",
    "error_type",
    "error",
    *METRICS,
    "result_bytes",
    "result",
)


def headline_metrics(task_type: str, data: dict[str, Any]) -> dict[str, float | None]:
    """The metric columns of a result's ``data`` (a sweep: its best combination's)."""
    source: Any = None
    if task_type == "sweep":
        best = data.get("best")
        source = best.get("metrics") if isinstance(best, dict) else None
    else:
        source = data.get("performance_metrics")
    if not isinstance(source, dict):
        return {}
    return {m: _num(source.get(m)) for m in METRICS}


def build(
    task_id: str,
    raw_result: bytes | None,
    raw_task: bytes | None,
    *,
    finished_ms: int,
    task_type: str = "",
) -> ArchivedRun:
    """A run from its Redis records.

    Raises:
        NotARun: the result is missing, not JSON, not a strategyq record, or not terminal.
    """
    if raw_result is None:
        raise NotARun("no result record")
    try:
        result = orjson.loads(raw_result)
    except orjson.JSONDecodeError as exc:
        raise NotARun(f"the result is not JSON ({exc})") from None
    if not isinstance(result, dict) or not isinstance(result.get("status"), str):
        raise NotARun("the result is not a strategyq record (no status)")
    status = result["status"]
    if status not in TERMINAL_STATUSES:
        raise NotARun(f"the result's status is {status!r}, not a terminal one")
    data = result.get("data")
    if data is not None and not isinstance(data, dict):
        raise NotARun("the result's data is not an object")
    task: dict[str, Any] | None = None
    if raw_task is not None:
        try:
            decoded = orjson.loads(raw_task)
            task = decoded if isinstance(decoded, dict) else None
        except orjson.JSONDecodeError:
            task = None
    if task is None and isinstance(data, dict) and isinstance(data.get("task_args"), dict):
        # The message is kept for the archiver only while an archive is on; a run that
        # ended with it off still carries its producer's args in its result record.
        task = {"task_id": task_id, "args": data["task_args"]}
    kind = task_type or (str(task.get("task_type")) if task and task.get("task_type") else "")
    if not kind and isinstance(data, dict):
        mode = data.get("execution_mode")
        kind = str(mode) if isinstance(mode, str) else ""
    kind = kind or "unknown"
    return ArchivedRun(
        task_id=task_id,
        task_type=kind,
        status=status,
        finished_ms=finished_ms,
        result=result,
        raw_result=raw_result,
        task=task,
        metrics=headline_metrics(kind, data or {}),
    )


def decompress(blob: bytes | memoryview) -> dict[str, Any]:
    """A stored result record, as the dict Redis held."""
    value = orjson.loads(zlib.decompress(bytes(blob)))
    if not isinstance(value, dict):
        raise ValueError("the stored result is not an object")
    return value
