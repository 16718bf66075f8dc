"""The result channel: JSON made in the child, checked in the parent. Never pickle.

A message is one tag byte and a JSON document: ``R`` + the list of instances,
``C`` + ``{"columns": {name: [values]}}`` (one call's DataFrame as columns, see
:func:`encode_result`), ``M`` + one list or columns document per call (a sweep
chunk's several calls), or ``E`` + ``{"type": ..., "message": ...}`` for an
error the child classified, then (all of them) ``\x00`` + ``{"logs": str,
"truncated": bool}``: what the strategy printed, capped in the child. The
parent treats every byte as untrusted: it parses JSON only, caps depth, size,
container count and message length, and maps error types through a fixed
table.

The parent's cost is linear in the answer's bytes with a small constant: one
``bytes.count`` pass bounds the number of containers (each costs ~60-250
bytes once parsed) before anything is parsed, then orjson parses, then one
iterative pass checks the shape. Everything that grows with the strategy's
output (converting numpy and pandas values, dates, nested rows) happens in
the child, inside its own limits.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
from dataclasses import dataclass
from typing import Any

import orjson

from strategyq import errors

RESULT_TAG = b"R"
COLUMNS_TAG = b"C"
ERROR_TAG = b"E"
RUNS_TAG = b"M"
LOGS_SEPARATOR = b"\x00"
"""Ends the answer's JSON (a NUL byte cannot occur in JSON text); the logs follow."""
BYTES_PER_CONTAINER = 16
"""An answer of n bytes may hold at most n / 16 (+ 1,024) dicts and lists."""
MAX_DEPTH = 12
"""Deepest nesting accepted in a result (the list is level 1, an instance level 2)."""
MAX_MESSAGE_CHARS = 4000
LOGS_MAX_BYTES = 64 * 1024
"""What a child keeps of what the strategy printed; the parent cuts longer logs to it too."""
ROWS_PER_ANSWER_BYTE = 12
"""The row dicts made from an answer's columns may take at most 12 × the answer's bytes."""

ERROR_TYPES: dict[str, type[errors.SandboxError]] = {
    "policy": errors.PolicyError,
    "strategy_error": errors.StrategyFailed,
    "memory": errors.StrategyMemoryError,
    "timeout": errors.StrategyTimeout,
    "prohibited_operation": errors.ProhibitedOperation,
    "module_unavailable": errors.ModuleUnavailable,
    "bad_result": errors.BadResult,
    "sandbox_unavailable": errors.SandboxUnavailable,
    "syntax": errors.StrategySyntaxError,
    "sandbox_error": errors.SandboxFault,
}

_OPTIONS = orjson.OPT_SERIALIZE_NUMPY


# -- child side ---------------------------------------------------------------------------


def _default(obj: Any) -> Any:
    import numpy as np
    import pandas as pd

    if obj is None or obj is pd.NaT or obj is pd.NA:
        return None
    if isinstance(obj, pd.Timestamp | dt.datetime | dt.date | dt.time):
        return obj.isoformat()
    if isinstance(obj, pd.Timedelta | dt.timedelta):
        return obj.total_seconds()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, decimal.Decimal):
        number = float(obj)
        return number if math.isfinite(number) else None
    if isinstance(obj, set | frozenset | pd.Series | pd.Index | pd.api.extensions.ExtensionArray):
        # An ExtensionArray: what unique() of the Categorical ticker (or any `str`) returns.
        return list(obj)
    raise TypeError(f"a value of type {type(obj).__name__} cannot be sent as JSON")


def _normalise(obj: Any, depth: int = 0) -> Any:
    # Slow path for what orjson refuses directly: non-string keys, odd containers.
    if depth > MAX_DEPTH:
        raise ValueError(f"the result is nested deeper than {MAX_DEPTH} levels")
    if isinstance(obj, dict):
        return {
            (k if isinstance(k, str) else str(_default_key(k))): _normalise(v, depth + 1)
            for k, v in obj.items()
        }
    if isinstance(obj, list | tuple):
        return [_normalise(v, depth + 1) for v in obj]
    return obj


def _default_key(key: Any) -> Any:
    try:
        return _default(key)
    except TypeError:
        return key


def to_instances(value: Any) -> list[Any]:
    """The strategy's return value as a list (a DataFrame becomes a list of row dicts)."""
    import pandas as pd

    if isinstance(value, pd.DataFrame):
        return list(value.to_dict(orient="records"))
    if isinstance(value, list | tuple):
        return list(value)
    raise errors.BadResult(
        f"the strategy returned {type(value).__name__}; return a list of dicts "
        "(one per instance) or a DataFrame"
    )


def encode_logs(text: str, truncated: bool) -> bytes:
    """The trailer with what the strategy printed."""
    return LOGS_SEPARATOR + orjson.dumps({"logs": text, "truncated": truncated})


def encode_result(value: Any) -> bytes:
    """Serialise the strategy's return value (in the child).

    A DataFrame whose columns qualify travels as columns (``C``, see
    :func:`_columns`); anything else, lists of dicts included, as rows (``R``).
    """
    import pandas as pd

    if isinstance(value, pd.DataFrame):
        columns = _encode_columns(value)
        if columns is not None:
            return columns
    return encode_rows(value)


def encode_rows(value: Any) -> bytes:
    """Serialise the strategy's return value as rows (``R``): one JSON object per instance."""
    instances = to_instances(value)
    for index, item in enumerate(instances):
        if not isinstance(item, dict):
            raise errors.BadResult(
                f"instance {index} is a {type(item).__name__}, not a dict; "
                "return a list of dicts like {'ticker': ..., 'date': ...}"
            )
    try:
        body = orjson.dumps(instances, default=_default, option=_OPTIONS)
    except TypeError:
        try:
            body = orjson.dumps(_normalise(instances), default=_default, option=_OPTIONS)
        except (TypeError, ValueError, RecursionError) as exc:
            raise errors.BadResult(f"the result is not plain JSON data: {exc}") from None
    # The parent checks this too (it trusts nothing); here it saves sending the bytes.
    _check_containers(body)
    return RESULT_TAG + body


def _columns(frame: Any) -> dict[str, Any] | None:
    """A returned DataFrame as ``{"columns": {name: values}}``, when its columns allow it.

    Columns travel as arrays (orjson writes them without building a Python
    object per cell): a tenth of the cost of one dict per row. Only NumPy
    numeric, boolean and datetime columns, and columns whose every value is a
    ``str`` (object, string or categorical), with string names, qualify; each
    decodes to exactly the values ``to_dict(orient="records")`` gives the row
    path. Anything else goes row by row.
    """
    import numpy as np

    names = list(frame.columns)
    if not names or not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
        return None
    columns: dict[str, Any] = {}
    for name in names:
        series = frame[name]
        values = series.to_numpy()
        kind = values.dtype.kind
        numpy_dtype = isinstance(series.dtype, np.dtype)
        if numpy_dtype and kind in "biu":
            columns[name] = values
        elif numpy_dtype and kind == "f" and values.dtype.itemsize <= 8:
            # The row path's values are Python floats: float32 widened, not its shortest repr.
            columns[name] = values.astype(np.float64, copy=False)
        elif numpy_dtype and kind == "M":
            text = _datetime_text(values)
            if text is None:
                return None
            columns[name] = text
        elif kind == "O" and all(isinstance(v, str) for v in values):
            columns[name] = values.tolist()
        else:
            # Nullable integers and booleans (NA would widen them to floats or objects),
            # tz-aware dates, mixed objects: row by row.
            return None
    return {"columns": columns}


_FIRST_SECOND = "1000-01-01T00:00:00"
_LAST_SECOND = "9999-12-31T23:59:59"


def _datetime_text(values: Any) -> list[str] | None:
    """Naive datetimes as ``Timestamp.isoformat()`` writes them, or None (NaT, fractions)."""
    import numpy as np

    if np.isnat(values).any():
        return None
    seconds = values.astype("datetime64[s]")
    if (seconds != values).any():
        return None
    if len(seconds) and (
        seconds.min() < np.datetime64(_FIRST_SECOND) or seconds.max() > np.datetime64(_LAST_SECOND)
    ):
        return None
    text: list[str] = np.datetime_as_string(seconds, unit="s").tolist()
    return text


def _as_rows(names: list[str], rows: int, size: int, containers: int) -> tuple[int, int]:
    """The size and container count of the rows answer that columns ``names`` stand for.

    ``size`` and ``containers`` are those of the columns document
    ``{"columns": {name: [values], ...}}`` (compact, as orjson writes it); the
    rows answer ``[{name: value, ...}, ...]`` holds the same value texts, so both
    figures follow exactly from the names and the number of rows.
    """
    keys = [orjson.dumps(name) for name in names]
    key_bytes = sum(len(k) for k in keys)
    key_containers = sum(k.count(b"{") + k.count(b"[") for k in keys)
    count = len(names)
    gaps = max(rows - 1, 0)
    # {"columns":{ … }}: 14 bytes; per column its key, ':', '[', ']' and the commas.
    structure = 14 + max(count - 1, 0) + key_bytes + count * (3 + gaps)
    values = size - structure
    per_row = 2 + key_bytes + count + max(count - 1, 0)
    rows_size = 2 + gaps + rows * per_row + values
    rows_containers = containers - 2 - count - key_containers + 1 + rows * (1 + key_containers)
    return rows_size, rows_containers


def _encode_columns(frame: Any) -> bytes | None:
    """``C`` + the frame's columns, when they qualify and every check of the rows passes.

    The parent judges a columns answer by the rows it stands for (their size
    against the answer cap, their dicts and lists against the container bound):
    an answer is accepted or refused, with the same message, whichever form it
    travels in. Columns that would fail a check the parent makes of columns
    alone go as rows, so that the rows' own message is the one given.
    """
    columnar = _columns(frame)
    if columnar is None:
        return None
    try:
        body = orjson.dumps(columnar, default=_default, option=_OPTIONS)
    except TypeError:
        return None
    containers = _count_containers(body)
    rows_size, rows_containers = _as_rows(
        list(columnar["columns"]), len(frame), len(body), containers
    )
    if (
        len(body) > rows_size
        or not _containers_fit(containers, len(body))
        or not _containers_fit(rows_containers, rows_size)
    ):
        return None
    return COLUMNS_TAG + body


def encode_runs(values: list[Any]) -> bytes:
    """Serialise the return values of several calls (a sweep chunk), in order (in the child)."""
    import pandas as pd

    runs: list[Any] = []
    for value in values:
        if isinstance(value, pd.DataFrame):
            columnar = _columns(value)
            if columnar is not None:
                runs.append(columnar)
                continue
        instances = to_instances(value)
        for index, item in enumerate(instances):
            if not isinstance(item, dict):
                raise errors.BadResult(
                    f"instance {index} is a {type(item).__name__}, not a dict; "
                    "return a list of dicts like {'ticker': ..., 'date': ...}"
                )
        runs.append(instances)
    try:
        body = orjson.dumps(runs, default=_default, option=_OPTIONS)
    except TypeError:
        try:
            body = orjson.dumps(_normalise(runs), default=_default, option=_OPTIONS)
        except (TypeError, ValueError, RecursionError) as exc:
            raise errors.BadResult(f"the result is not plain JSON data: {exc}") from None
    # The parent checks this too (it trusts nothing); here it saves sending the bytes.
    _check_containers(body)
    return RUNS_TAG + body


def encode_error(kind: str, message: str) -> bytes:
    """Serialise an error the child classified."""
    return ERROR_TAG + orjson.dumps({"type": kind, "message": message[:MAX_MESSAGE_CHARS]})


# -- parent side --------------------------------------------------------------------------


def clean_text(text: str) -> str:
    """Untrusted text made safe to show: capped, no control characters but newline and tab."""
    text = text[:MAX_MESSAGE_CHARS]
    return "".join(c if c in "\n\t" or c.isprintable() else "?" for c in text)


def _check_shape(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise errors.BadResult("the strategy's result is not a list of instances")
    # Depth counts scalars too (the list is 1, an instance 2, its fields 3), but only
    # containers are walked: a flat instance costs one look at each of its fields.
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth >= MAX_DEPTH and (depth > MAX_DEPTH or node):
            raise errors.BadResult(
                f"the result is nested deeper than {MAX_DEPTH} levels; return flat instances"
            )
        items = node.values() if isinstance(node, dict) else node
        stack.extend((v, depth + 1) for v in items if isinstance(v, dict | list))
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise errors.BadResult(f"instance {index} is not a dict")
    return value


_SCALARS = frozenset({str, int, float, bool, type(None)})


@dataclass(frozen=True)
class ColumnRun:
    """One call's instances as the child sent them: equal-length columns of JSON scalars.

    Kept as columns for a reader that can use them so (a sweep chunk's
    metrics); :meth:`rows` gives the dicts a single run would have sent.
    """

    columns: dict[str, list[Any]]

    def rows(self) -> list[dict[str, Any]]:
        """One dict per row, fields in column order."""
        names = list(self.columns)
        return [
            dict(zip(names, row, strict=True)) for row in zip(*self.columns.values(), strict=True)
        ]


def _column_run(run: Any) -> ColumnRun:
    """A run sent as columns, checked: a dict of equal-length lists of scalars."""
    columns = run.get("columns")
    if set(run) != {"columns"} or not isinstance(columns, dict):
        raise errors.BadResult("the strategy process sent a malformed message")
    lists = list(columns.values())
    if not all(isinstance(v, list) for v in lists) or len({len(v) for v in lists}) > 1:
        raise errors.BadResult("the strategy process sent a malformed message")
    for values in lists:
        if not set(map(type, values)) <= _SCALARS:
            raise errors.BadResult("the strategy process sent a malformed message")
    return ColumnRun(columns)


def _row_bytes(run: ColumnRun) -> int:
    """What :meth:`ColumnRun.rows` would allocate: one dict per row and its list slot."""
    import sys

    rows = len(next(iter(run.columns.values()), []))
    return rows * (sys.getsizeof(dict.fromkeys(run.columns)) + 8)


def _check_rows(runs: list[Any], body: bytes | memoryview) -> None:
    # Columns cost a few bytes per cell, the dicts made from them ~200 bytes per row:
    # the dicts are counted before any is built, whether they are built here or later.
    total = sum(_row_bytes(run) for run in runs if isinstance(run, ColumnRun))
    if total > ROWS_PER_ANSWER_BYTE * len(body) + (1 << 20):
        raise errors.BadResult(
            f"the strategy's result has too many rows for its size ({len(body)} bytes would "
            f"make {total} bytes of rows); return fewer rows, or more data per row"
        )


def _run(run: Any, keep_columns: bool) -> Any:
    if not isinstance(run, dict):
        return _check_shape(run)
    # Scalars in equal-length columns: the rows are flat dicts, nothing to check further.
    return _column_run(run)


@dataclass(frozen=True)
class Logs:
    """What the strategy printed (at most the child's cap), and whether more was dropped."""

    text: str = ""
    truncated: bool = False

    def fields(self) -> dict[str, Any]:
        """The result fields (``logs``, ``logs_truncated``); none when nothing was printed."""
        if not self.text and not self.truncated:
            return {}
        return {"logs": self.text, "logs_truncated": self.truncated}


def _logs(trailer: bytes | memoryview) -> Logs:
    """The logs trailer, cut to :data:`LOGS_MAX_BYTES` (a child's own cap is not trusted)."""
    try:
        value = orjson.loads(trailer)
    except orjson.JSONDecodeError:
        return Logs()
    if not isinstance(value, dict) or not isinstance(value.get("logs"), str):
        return Logs()
    text, cut = cap_text(value["logs"], LOGS_MAX_BYTES)
    return Logs(clean_logs(text), cut or bool(value.get("truncated")))


def cap_text(text: str, max_bytes: int) -> tuple[str, bool]:
    """``text`` cut to at most ``max_bytes`` of UTF-8 (on a character), and whether it was cut."""
    # A character is at most 4 bytes: a prefix of max_bytes characters holds the answer.
    head = text[: max_bytes + 1]
    data = head.encode("utf-8", "replace")
    if len(data) <= max_bytes and len(head) == len(text):
        return text, False
    return data[:max_bytes].decode("utf-8", "ignore"), True


def clean_logs(text: str) -> str:
    """Printed text made safe to store: no control characters but newline and tab."""
    return "".join(c if c in "\n\t" or c.isprintable() else "?" for c in text)


def _count_containers(body: bytes | bytearray, start: int = 0, end: int | None = None) -> int:
    # Braces inside strings count too: an upper bound, found in one C-speed pass.
    end = len(body) if end is None else end
    return body.count(b"{", start, end) + body.count(b"[", start, end)


def _containers_fit(containers: int, size: int) -> bool:
    return containers <= size // BYTES_PER_CONTAINER + 1024


def _refuse_containers(containers: int, size: int) -> None:
    if not _containers_fit(containers, size):
        raise errors.BadResult(
            f"the strategy's result holds about {containers} dicts and lists in {size} "
            f"bytes (at most one per {BYTES_PER_CONTAINER} bytes); return fewer, fuller instances"
        )


def _check_containers(body: bytes | bytearray, start: int = 0, end: int | None = None) -> int:
    """The containers counted in ``body[start:end]``; raises when there are too many."""
    end = len(body) if end is None else end
    containers = _count_containers(body, start, end)
    _refuse_containers(containers, end - start)
    return containers


def too_large(max_bytes: int) -> errors.BadResult:
    """The error for an answer larger than the cap."""
    return errors.BadResult(
        f"the strategy's result is larger than {max_bytes} bytes; return fewer or smaller instances"
    )


def decode_answer(
    message: bytes | bytearray, *, keep_columns: bool = False, max_bytes: int | None = None
) -> tuple[Any, Logs]:
    """Parse one message from the child: (instances, logs), or raise the error it reports.

    A several-call message gives one list of instances per call; with
    ``keep_columns`` a call whose DataFrame travelled as columns stays a
    :class:`ColumnRun`, and so does a single call's (else it becomes its row
    dicts). A columns answer is judged by the rows it stands for: their size
    against ``max_bytes`` (the answer cap; the same error as a rows answer over
    it) and their dicts against the container bound. An error raised here
    carries the logs in its ``logs`` attribute (but the cap's, as for a rows
    answer cut off while being read).
    """
    # Views, not copies: the answer is read in place (it may be tens of megabytes).
    end = message.find(LOGS_SEPARATOR)
    end = len(message) if end < 0 else end
    view = memoryview(message)
    logs = _logs(view[end + 1 :]) if end + 1 < len(message) else Logs()
    tag, body = bytes(view[:1]), view[1:end]
    over: errors.BadResult | None = None
    try:
        containers = 0
        if tag in (RESULT_TAG, RUNS_TAG, COLUMNS_TAG):
            containers = _check_containers(message, 1, end)
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise errors.BadResult(
                "the strategy's result could not be read as JSON (it may be too deeply nested)"
            ) from None
        if tag == RESULT_TAG:
            return _check_shape(payload), logs
        if tag == COLUMNS_TAG and isinstance(payload, dict):
            run = _column_run(payload)
            rows = len(next(iter(run.columns.values()), []))
            size, rows_containers = _as_rows(list(run.columns), rows, len(body), containers)
            if max_bytes is not None and len(message) - len(body) + size > max_bytes:
                over = too_large(max_bytes)
            else:
                _refuse_containers(rows_containers, size)
                return (run if keep_columns else run.rows()), logs
        elif tag == RUNS_TAG and isinstance(payload, list):
            # One list of instances per call, in the order of the calls.
            runs = [_run(run, keep_columns) for run in payload]
            _check_rows(runs, body)
            if not keep_columns:
                runs = [run.rows() if isinstance(run, ColumnRun) else run for run in runs]
            return runs, logs
        elif tag == ERROR_TAG and isinstance(payload, dict):
            kind = payload.get("type")
            text = payload.get("message")
            if isinstance(kind, str) and kind in ERROR_TYPES and isinstance(text, str):
                raise ERROR_TYPES[kind](clean_text(text))
            raise errors.BadResult("the strategy process sent a malformed message")
        else:
            raise errors.BadResult("the strategy process sent a malformed message")
    except errors.SandboxError as exc:
        exc.logs = logs  # type: ignore[attr-defined]
        raise
    # Raised outside: a rows answer over the cap is cut off unread, its logs with it.
    assert over is not None
    raise over


def decode(message: bytes, *, keep_columns: bool = False) -> Any:
    """Parse one message from the child: the instances, or raise the error it reports.

    A several-call message gives one list of instances per call (see
    :func:`decode_answer`).
    """
    return decode_answer(message, keep_columns=keep_columns)[0]
