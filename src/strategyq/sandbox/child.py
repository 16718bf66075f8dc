"""What the forked child does: lock down, run the entry function, send one message, exit.

Nothing here returns to the caller: every path ends in ``os._exit``. Error text
is formatted here, in the child, so no user-defined ``__str__`` ever runs in
the parent; tracebacks keep only the strategy's own frames.
"""

from __future__ import annotations

import contextlib
import difflib  # imported here: after lock-down the child can open no module file
import errno
import logging
import marshal
import os
import struct
import sys
import traceback
import warnings
from types import CodeType
from typing import Any

import orjson

from strategyq import errors
from strategyq.sandbox import checker, lockdown, namespace, preload, result
from strategyq.sandbox.lockdown import (
    RESULT_FD,
    SOURCE_FD,
    LayerFailed,
    LockdownPlan,
    Orphaned,
    lock_down,
)

_PROHIBITED_ERRNOS = {errno.EPERM, errno.EACCES, errno.ENOSYS, errno.EFBIG}
_MAX_FRAMES = 12


def _internal_paths() -> list[str]:
    paths = {sys.prefix, sys.base_prefix, sys.exec_prefix, os.path.dirname(os.__file__)}
    paths.update(p for p in sys.path if p and os.path.isabs(p))
    with contextlib.suppress(OSError):
        paths.add(os.getcwd())
    paths.add(os.path.expanduser("~"))
    # Longest first, so a site-packages path is not half-replaced by its prefix.
    return sorted((p for p in paths if len(p) > 1), key=len, reverse=True)


_INTERNAL_PATHS = _internal_paths()


def scrub(text: str) -> str:
    """Hide the worker's own paths in a message meant for the user."""
    for path in _INTERNAL_PATHS:
        text = text.replace(path, "<worker>")
    return text


def _describe(exc: BaseException) -> str:
    try:
        if isinstance(exc, OSError) and exc.errno is not None:
            # Not str(exc): its filename may be one of the worker's own files.
            text = f"[Errno {exc.errno}] {os.strerror(exc.errno)}"
        else:
            text = str(exc)
    except BaseException:
        text = "<the exception's message could not be produced>"
    name = type(exc).__name__
    return scrub(f"{name}: {text}" if text else name)


def _user_frames(exc: BaseException, source_lines: list[str]) -> list[str]:
    lines: list[str] = []
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename != checker.FILENAME:
            continue
        lines.append(f"line {frame.lineno}, in {frame.name}")
        lineno = frame.lineno or 0
        if 0 < lineno <= len(source_lines):
            lines.append("    " + source_lines[lineno - 1].strip())
    if len(lines) > 2 * _MAX_FRAMES:
        lines = [*lines[:_MAX_FRAMES], "...", *lines[-_MAX_FRAMES:]]
    return lines


def _missing_module(exc: BaseException) -> str | None:
    """The module an import error (or the error it was raised from) could not find."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ImportError) and current.name:
            return current.name
        current = current.__cause__ or current.__context__
    return None


def _first_line(exc: BaseException) -> int | None:
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename == checker.FILENAME:
            return frame.lineno
    return None


_LIBRARY_READS = ("/usr/share/zoneinfo", "/sys/fs/cgroup", "/sys/devices/system/cpu")
"""Places libraries read by themselves (time zones, the CPU count and quota)."""


def _own_file(exc: OSError) -> bool:
    """Whether a refused file is part of the installation (a library's data file, a time
    zone): something the strategy did not ask for."""
    name = exc.filename if isinstance(exc.filename, str) else ""
    # Normalised: a path that climbs out of a library's folder with '..' is not its file.
    name = os.path.normpath(name) if name else ""
    return bool(name) and any(
        name.startswith(path + os.sep) for path in (*_INTERNAL_PATHS, *_LIBRARY_READS)
    )


def _column_hint(exc: BaseException, columns: Any) -> str:
    """For a ``KeyError`` on a column name: the columns ``df`` has, nearest first."""
    key = exc.args[0] if isinstance(exc, KeyError) and exc.args else None
    try:
        names = [str(c) for c in columns]
    except Exception:
        return ""
    if not isinstance(key, str) or not names or key in names:
        return ""
    close = difflib.get_close_matches(key, names, n=3, cutoff=0.5)
    nearest = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return f"\ndf has no column {key!r}{nearest} df's columns: {', '.join(names)}"


def classify(exc: BaseException, source: str, columns: Any = ()) -> tuple[str, str]:
    """Map an exception raised while running the strategy to (error type, message).

    ``columns``: the strategy frame's columns, named when a ``KeyError`` is a column.
    """
    frames = _user_frames(exc, source.splitlines())
    where = f" ({frames[0]})" if frames else ""
    if isinstance(exc, errors.SandboxError):
        # Raised at run time by the namespace's guards (getattr of an internal name).
        return exc.error_type, str(exc) + where
    if isinstance(exc, ImportError):
        name = _missing_module(exc)
        line = _first_line(exc)
        at = f" (line {line})" if line else ""
        if name:
            finding = checker.module_finding(name, line or 0)
            fix = finding.fix if finding is not None else ""
            what = f"module '{name}'"
        else:
            fix, what = "", f"what the strategy imported ({_describe(exc)})"
        return (
            "module_unavailable",
            f"the sandbox does not provide {what}{at}"
            + (f"; {fix}" if fix else "; the sandbox has pandas, numpy and the standard library"),
        )
    if isinstance(exc, MemoryError):
        return "memory", f"the strategy ran out of memory{where}; use less data or fewer copies"
    if isinstance(exc, RecursionError):
        return (
            "memory",
            f"the strategy recursed too deeply and exhausted its stack{where}; use a loop",
        )
    if isinstance(exc, OSError) and (
        isinstance(exc, PermissionError) or exc.errno in _PROHIBITED_ERRNOS
    ):
        if _own_file(exc):
            return (
                "sandbox_error",
                f"a library could not read one of its own files in the sandbox{where} "
                f"({_describe(exc)}); this is a bug of the sandbox, not of the strategy: "
                "report it to the operator",
            )
        return (
            "prohibited_operation",
            f"the strategy tried a forbidden operation (files, network or processes){where}: "
            f"{_describe(exc)}",
        )
    body = "\n".join(["Traceback (strategy code only):", *frames, _describe(exc)])
    return "strategy_error", body + _column_hint(exc, columns)


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def _show_warnings() -> None:
    # Lock-down silenced warnings; a strategy's own (and its libraries') warnings are
    # part of what it prints: shown once per place, into the captured output that comes
    # back as the result's logs. Logging starts as in a fresh interpreter (the forking
    # parent's handlers write to descriptors that now lead nowhere): warnings and above
    # go to stderr, and `logging.basicConfig` works.
    warnings.resetwarnings()
    warnings.simplefilter("default")
    warnings.showwarning = _show_warning
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(logging.WARNING)
    logging.lastResort = logging.StreamHandler()  # stderr as it is when a record comes
    logging.lastResort.setLevel(logging.WARNING)


def _send(payload: bytes) -> None:
    view = memoryview(payload)
    while view:
        written = os.write(RESULT_FD, view)
        view = view[written:]


def _execute(
    code: CodeType | None, source: str, entry: str | None, restricted: bool, takes_params: bool
) -> tuple[Any, bool]:
    if code is None and restricted:
        # The source came straight to this child (a fork server never sees it):
        # check it here, after lock-down, and run exactly the tree that was checked.
        report = checker.check(source)
        code, entry, takes_params = report.code, report.entry, report.takes_params
    elif code is None:
        tree = checker.parse(source)
        entry, _ = checker.pick_entry(tree)
        takes_params = checker.entry_takes_params(tree, entry)
        code = compile(tree, checker.FILENAME, "exec", dont_inherit=True)
    assert entry is not None
    scope = namespace.namespace(restricted)
    exec(code, scope)
    return scope[entry], takes_params


def _call(function: Any, frame: Any, takes_params: bool, params: dict[str, Any] | None) -> Any:
    # A fresh DataFrame object per call: with pandas' copy-on-write, what one call
    # changes in its frame (a column added, values set) is never seen by the next.
    view = frame.copy(deep=False) if hasattr(frame, "copy") else frame
    return function(view, dict(params or {})) if takes_params else function(view)


def _run_all(
    function: Any, frame: Any, takes_params: bool, runs: list[dict[str, Any]], source: str
) -> bytes:
    """Several calls on one frame (a sweep chunk): each run's ``params`` and optional
    ``until`` (the last date the call may see)."""
    values = []
    windows: dict[str, Any] = {}
    for run in runs:
        until = run.get("until")
        view = frame
        if until is not None:
            if until not in windows:
                windows[until] = frame[frame["date"] <= until].reset_index(drop=True)
            view = windows[until]
        try:
            values.append(_call(function, view, takes_params, run.get("params")))
        except BaseException as exc:
            kind, message = classify(exc, source, getattr(frame, "columns", ()))
            return result.encode_error(kind, f"with params {run.get('params')}: {message}")
    try:
        return result.encode_runs(values)
    except errors.BadResult as exc:
        return result.encode_error("bad_result", str(exc))


def _read_all(fd: int, max_bytes: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size <= max_bytes:
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    os.close(fd)
    return b"".join(chunks)[: max_bytes + 1]


_PROGRAM = struct.Struct(">4sIIIB")
_PROGRAM_MAGIC = b"SQP2"
MAX_PROGRAM_BYTES = 16 * 1024 * 1024


def encode_program(
    source: str, code: CodeType | None, entry: str | None, takes_params: bool = False
) -> bytes:
    """What a fork server's client writes into a child's source pipe (before its calls).

    The source (for the user's own traceback lines) and, when the policy was
    checked by the (trusted) client, the code it compiled from the checked
    tree, so the child runs exactly that without parsing and checking again.
    :func:`with_calls` appends what the function is called with.
    """
    compiled = marshal.dumps(code) if code is not None else b""
    name = (entry or "").encode()
    text = source.encode()
    header = _PROGRAM.pack(_PROGRAM_MAGIC, len(compiled), len(name), len(text), takes_params)
    return header + compiled + name + text


def with_calls(
    program: bytes, params: dict[str, Any] | None = None, runs: list[dict[str, Any]] | None = None
) -> bytes:
    """``program`` plus its calls: one call with ``params``, or one call per run of ``runs``."""
    if params is None and runs is None:
        return program
    return program + orjson.dumps({"params": params, "runs": runs})


Program = tuple[str, CodeType | None, str | None, bool, dict[str, Any]]


def read_program(fd: int) -> Program | None:
    """Read what :func:`encode_program` wrote; None at end of file before any byte."""
    data = _read_all(fd, MAX_PROGRAM_BYTES)
    if not data:
        return None
    magic, code_len, name_len, source_len, takes_params = _PROGRAM.unpack_from(data)
    if magic != _PROGRAM_MAGIC:
        raise ValueError("not a strategy program")
    at = _PROGRAM.size
    code = marshal.loads(data[at : at + code_len]) if code_len else None
    at += code_len
    entry = data[at : at + name_len].decode() or None
    at += name_len
    source = data[at : at + source_len].decode("utf-8", "replace")
    at += source_len
    calls: dict[str, Any] = {}
    if at < len(data):
        calls = orjson.loads(data[at:])
    return source, code, entry, bool(takes_params), calls


def main(
    plan: LockdownPlan,
    write_fd: int,
    source: str | None,
    code: CodeType | None,
    entry: str | None,
    frame: Any,
    restricted: bool,
    source_fd: int | None = None,
    takes_params: bool = False,
) -> None:
    """Run in the forked child; never returns.

    With ``source_fd`` (and ``source`` None) the child locks down first and then
    reads its program (:func:`encode_program`) from that descriptor; end of file
    before any byte means "not needed after all" and the child exits quietly.
    """
    status = 0
    try:
        try:
            lock_down(plan, write_fd, source_fd)
        except Orphaned:
            # Nobody is left to answer to; whoever waits sees the exit.
            return
        except LayerFailed as exc:
            _send(
                result.encode_error(
                    "sandbox_unavailable",
                    f"the sandbox layer '{exc.layer}' could not be applied ({exc}); the strategy "
                    "was not run. Run on a kernel with Landlock and seccomp, or ask the operator.",
                )
            )
            return
        calls: dict[str, Any] = {}
        columns: Any = getattr(frame, "columns", ())
        preload.refuse_further_imports()
        _show_warnings()
        if source is None:
            program = read_program(SOURCE_FD)
            if program is None:
                return
            source, code, entry, takes_params, calls = program
        sys.setrecursionlimit(1000)
        try:
            function, takes_params = _execute(code, source, entry, restricted, takes_params)
            runs = calls.get("runs")
            if runs is not None:
                payload = _run_all(function, frame, takes_params, runs, source)
            else:
                # One call: nothing comes after it that could see what it changes in
                # its frame, so it gets the frame itself (no shallow copy to make).
                # Its labels were kept above for an error's hint (an Index never changes).
                params = calls.get("params")
                value = function(frame, dict(params or {})) if takes_params else function(frame)
                payload = result.encode_result(value)
        except BaseException as exc:
            kind, message = classify(exc, source, columns)
            payload = result.encode_error(kind, message)
        capture = lockdown.CAPTURE
        _send(payload + result.encode_logs(capture.text(), capture.truncated))
        os.close(RESULT_FD)
    except BaseException:
        status = 70
    finally:
        os._exit(status)
