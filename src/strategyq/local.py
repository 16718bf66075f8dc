"""Local runs: a task through the same executor, sandbox host and child as a worker's, no Redis.

A :class:`LocalSession` starts one executor process (``python -m
strategyq.executor``, exactly as a worker slot does) and keeps it warm, so a
second run skips the imports and the sandbox host's start-up. Each run sends
the task message the queue would carry and builds the result record the
worker would write (``status``, ``data``, ``updated_at``), with
``worker_id: "local"``. A sweep is planned by the executor, its chunks run one
after another in the same executor, and the result is assembled as the
worker assembles it.

``strategyq.backtest(...)``, ``strategyq.screen(...)`` and
``strategyq.sweep(...)`` use one session per Python process, closed at exit.
"""

from __future__ import annotations

import atexit
import inspect
import textwrap
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from strategyq.check import require_runnable
from strategyq.errors import SandboxUnavailable, TaskValidationError
from strategyq.executor.client import ExecutorDied, ExecutorHung, ExecutorProcess, RunOutcome
from strategyq.protocol.chunks import chunk_position, read_fanout
from strategyq.protocol.envelope import TaskType
from strategyq.protocol.results import Status, dumps, envelope, utc_now_iso
from strategyq.protocol.task import (
    DEFAULT_MAXIMIZE,
    DEFAULT_SCREENING_LIMIT,
    DEFAULT_TOP_N,
    parse_submitted,
)
from strategyq.queue import records
from strategyq.settings import Settings

if TYPE_CHECKING:
    from strategyq.result import Result

LOCAL_WORKER_ID = "local"
"""The ``worker_id`` of a local run's record."""

# The layers a worker refuses to run without (strategyq.worker.pool): the same here.
REQUIRED_LAYERS = ("landlock", "seccomp", "canary")

StageCallback = Callable[[str], None]


def strategy_source(strategy: str | Path | Callable[..., Any] | type) -> str:
    """The source code of ``strategy``: a source string, a ``.py`` path, a function or class.

    A function or class must be defined in a file or a notebook cell (its source is
    read with :func:`inspect.getsource`); the strategy still runs in the sandbox from
    that source, never as the object itself, so it may use only what the source
    defines (helpers it calls must be passed as part of a source string).

    Raises:
        TaskValidationError: a path that does not exist, or an object without source.
    """
    if isinstance(strategy, Path):
        return _read(strategy)
    if isinstance(strategy, str):
        if "\n" not in strategy and strategy.endswith(".py"):
            return _read(Path(strategy))
        return strategy
    if inspect.isfunction(strategy):
        cell = _cell_definitions(strategy.__code__.co_filename)
        if cell is not None:
            return cell
    if inspect.isfunction(strategy) or inspect.isclass(strategy):
        try:
            return textwrap.dedent(inspect.getsource(strategy))
        except (OSError, TypeError) as exc:
            found = _cell_class_source(strategy) if inspect.isclass(strategy) else None
            if found is not None:
                return found
            raise TaskValidationError(
                f"cannot read the source of {strategy.__qualname__} ({exc}); define it in a "
                "file or a notebook cell, or pass its source as a string"
            ) from None
    raise TaskValidationError(
        f"a strategy is a source string, a path to a .py file, or a function or class; "
        f"got {type(strategy).__name__}"
    )


def _cell_definitions(filename: str) -> str | None:
    """The definitions of the notebook cell a function was written in, or None.

    A kernel keeps a cell's lines in :mod:`linecache` with no modification time
    (a file's entry has one): the strategy is then the cell's imports, classes,
    functions and constant assignments, so a function may use the classes and
    helpers written beside it. Anything else in the cell (calls, plots) stays out.
    """
    import ast
    import linecache

    entry = linecache.cache.get(filename)
    if entry is None or len(entry) != 4 or entry[1] is not None:
        return None
    text = "".join(entry[2])
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return None
    kept = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef, ast.Assign, ast.AnnAssign)
    parts = []
    lines = text.splitlines(keepends=True)
    for node in tree.body:
        if not isinstance(node, kept):
            continue
        if isinstance(node, ast.Assign | ast.AnnAssign) and not isinstance(
            node.value, ast.Constant | ast.Tuple | ast.List | ast.Dict
        ):
            continue
        first = min([d.lineno for d in getattr(node, "decorator_list", [])] + [node.lineno])
        parts.append("".join(lines[first - 1 : node.end_lineno]))
    return "\n\n".join(p.rstrip("\n") for p in parts) + "\n" if parts else None


def _cell_class_source(cls: type) -> str | None:
    """A class's source from the cell (or file) its methods were compiled from.

    ``inspect.getsource`` finds a class through its module's file, which a notebook's
    ``__main__`` does not have (before Python 3.13); its methods' code objects still
    name the cell, whose lines the kernel keeps in :mod:`linecache`.
    """
    import ast
    import linecache

    for value in vars(cls).values():
        function = getattr(value, "__func__", value)
        code = getattr(function, "__code__", None)
        if code is None:
            continue
        text = "".join(linecache.getlines(code.co_filename))
        try:
            tree = ast.parse(text)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef) and node.name == cls.__name__:
                segment = ast.get_source_segment(text, node)
                if segment is not None:
                    first = node.decorator_list[0].lineno if node.decorator_list else node.lineno
                    lines = text.splitlines(keepends=True)[first - 1 : node.end_lineno]
                    return textwrap.dedent("".join(lines))
    return None


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise TaskValidationError(f"cannot read the strategy file {path}: {exc.strerror}") from None


class LocalSession:
    """A warm executor process that runs tasks in this process tree, without a queue.

    Args:
        settings: Limits and the market-data store (default: from the environment,
            as a worker reads them; no Redis is needed).
        insecure_no_sandbox: Run without Landlock and seccomp (as
            ``strategyq worker --insecure-no-sandbox``).

    Use as a context manager, or call :meth:`close`; the executor also ends with
    this process.
    """

    def __init__(
        self, settings: Settings | None = None, *, insecure_no_sandbox: bool = False
    ) -> None:
        conf = settings or Settings.from_env()
        self.settings = replace(
            conf, insecure_no_sandbox=insecure_no_sandbox or conf.insecure_no_sandbox
        )
        self._executor: ExecutorProcess | None = None
        self.layers: dict[str, bool] = {}

    def __enter__(self) -> LocalSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Start the executor now (the first run does it otherwise)."""
        self._ready()

    def _ready(self) -> ExecutorProcess:
        if self._executor is not None and self._executor.alive():
            return self._executor
        self._drop()
        executor = ExecutorProcess(self.settings)
        try:
            layers = executor.start()
        except BaseException:
            # Interrupted while warming up (Ctrl-C): nothing is left running.
            executor.kill()
            executor.close(0)
            raise
        missing = [name for name in REQUIRED_LAYERS if not layers.get(name)]
        if missing and not self.settings.insecure_no_sandbox:
            executor.close()
            raise SandboxUnavailable(
                f"sandbox layer(s) {', '.join(missing)} unavailable on this machine (Landlock "
                "needs Linux >= 5.13, seccomp needs libseccomp); run on a supported kernel, or "
                "pass insecure_no_sandbox=True (--insecure-no-sandbox) to accept the risk"
            )
        self._executor, self.layers = executor, layers
        return executor

    def _drop(self) -> None:
        if self._executor is not None:
            self._executor.kill()
            self._executor.close(0)
            self._executor = None

    def close(self) -> None:
        """Stop the executor and its sandbox host."""
        if self._executor is not None:
            self._executor.close()
            self._executor = None

    # -- running one wire task ---------------------------------------------------------

    def run(
        self, message: Mapping[str, Any], on_stage: StageCallback | None = None
    ) -> dict[str, Any]:
        """Run one wire task (``task_id``, ``task_type``, ``args``); its result record.

        The task is validated as a producer validates it; a task the executor
        rejects, or a strategy that fails, gives an ``error`` record, as on the queue.

        Raises:
            TaskValidationError: the task is invalid (nothing ran).
            SandboxUnavailable: the sandbox cannot start here.
        """
        msg = dict(message)
        msg.setdefault("task_id", str(uuid.uuid4()))
        try:
            raw, task = parse_submitted(msg)
        except TaskValidationError as exc:
            raise TaskValidationError(f"task not run: {exc}") from None
        # The producers' check: a syntax error or a refused construct is reported with
        # every finding before any process is asked to run it.
        require_runnable(task.strategy_code)
        stage = on_stage or (lambda _name: None)
        deadline_s = self._deadline_s(task.options.timeout_s)
        started = time.monotonic()
        started_at = utc_now_iso()
        outcome = self._execute(raw, stage, deadline_s)
        args = orjson.loads(raw).get("args")
        if task.task_type is TaskType.SWEEP and outcome.ok:
            return self._sweep(outcome, stage, deadline_s, started, started_at, args)
        return _record(outcome, time.monotonic() - started, args=args)

    def _deadline_s(self, asked_s: float | None) -> float:
        limit = self.settings.sandbox.time_limit_s
        if asked_s:
            limit = min(limit, asked_s)
        return limit + self.settings.executor_margin_s

    def _execute(self, raw: bytes, stage: StageCallback, deadline_s: float) -> RunOutcome:
        """One message through the executor; an executor lost once is replaced and tried again."""
        failures: list[str] = []
        while True:
            try:
                # Inside the try: a Ctrl-C just after _ready() took the executor on
                # still drops it, as one during the run does.
                executor = self._ready()
                return executor.run(raw, stage, deadline_s=deadline_s)
            except (ExecutorDied, ExecutorHung) as exc:
                self._drop()
                failures.append(str(exc))
                if len(failures) == 2:
                    return RunOutcome(
                        ok=False,
                        error=f"the executor process was lost twice: {'; '.join(failures)}",
                        error_type="timeout" if isinstance(exc, ExecutorHung) else "internal",
                    )
            except BaseException:
                # Interrupted (Ctrl-C in a terminal or a notebook): the executor may be
                # mid-task; a fresh one is the known-good state for the next run.
                self._drop()
                raise

    def _sweep(
        self,
        planned: RunOutcome,
        stage: StageCallback,
        deadline_s: float,
        started: float,
        started_at: str,
        args: Any = None,
    ) -> dict[str, Any]:
        """Run a planned sweep's chunks one by one and assemble its result as a worker does."""
        from strategyq.sweep.assemble import assemble

        plan, messages = read_fanout(planned.data)
        chunks: dict[int, Any] = {}
        total = int(plan["total"])
        done = 0
        for raw in messages:
            index, count = chunk_position(raw)
            stage(f"running_chunks {done}/{total}")
            outcome = self._execute(raw, lambda _name: None, deadline_s)
            if not outcome.ok:
                return _record(
                    outcome, time.monotonic() - started, chunk=index, worker_id=LOCAL_WORKER_ID
                )
            chunks[index] = orjson.loads(outcome.data)
            done += count
        data = assemble(plan, chunks, self.settings.sweep_max_results)
        elapsed = time.monotonic() - started
        data.update(
            progress={"done": done, "total": total},
            started_at=started_at,
            execution_time_ms=round(elapsed * 1000, 3),
            execution_time_seconds=round(elapsed, 6),
            worker_id=LOCAL_WORKER_ID,
            completed_at=utc_now_iso(),
        )
        if isinstance(args, dict):
            data["task_args"] = args
        record = dumps(envelope(Status.COMPLETED, data))
        while len(record) > self.settings.max_result_bytes and data.get("results"):
            # The worker's rule: past the result cap the ranked list is halved.
            data["results"] = data["results"][: len(data["results"]) // 2]
            data["results_returned"] = len(data["results"])
            data["results_truncated"] = True
            record = dumps(envelope(Status.COMPLETED, data))
        result: dict[str, Any] = orjson.loads(record)
        return result

    # -- the Python API ----------------------------------------------------------------

    def backtest(
        self,
        strategy: str | Path | Callable[..., Any] | type,
        symbols: Sequence[str] | str,
        start: str,
        end: str,
        **task_args: Any,
    ) -> Result:
        """Backtest ``strategy`` over ``symbols`` from ``start`` to ``end``: :func:`backtest`."""
        args = {
            "symbols": _symbols(symbols, self.settings),
            "start_date": start,
            "end_date": end,
            **task_args,
        }
        return self._result(TaskType.BACKTEST, strategy, args)

    def screen(
        self,
        strategy: str | Path | Callable[..., Any] | type,
        universe: Sequence[str] | str,
        limit: int = DEFAULT_SCREENING_LIMIT,
        **task_args: Any,
    ) -> Result:
        """Screen ``universe`` with ``strategy``; see :func:`screen`."""
        args = {"universe": _symbols(universe, self.settings), "limit": limit, **task_args}
        return self._result(TaskType.SCREENING, strategy, args)

    def sweep(
        self,
        strategy: str | Path | Callable[..., Any] | type,
        symbols: Sequence[str] | str,
        start: str,
        end: str,
        param_grid: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]],
        *,
        maximize: str = DEFAULT_MAXIMIZE,
        top_n: int = DEFAULT_TOP_N,
        **task_args: Any,
    ) -> Result:
        """Run a parameter sweep; see :func:`sweep`."""
        grid: Any = (
            {k: list(v) for k, v in param_grid.items()}
            if isinstance(param_grid, Mapping)
            else [dict(c) for c in param_grid]
        )
        args = {
            "symbols": _symbols(symbols, self.settings),
            "start_date": start,
            "end_date": end,
            "param_grid": grid,
            "maximize": maximize,
            "top_n": top_n,
            **task_args,
        }
        return self._result(TaskType.SWEEP, strategy, args)

    def _result(
        self,
        task_type: TaskType,
        strategy: str | Path | Callable[..., Any] | type,
        args: dict[str, Any],
    ) -> Result:
        from strategyq.result import Result

        task_id = str(args.pop("task_id", None) or uuid.uuid4())
        args = {"strategy_code": strategy_source(strategy), **args}
        message = {"task_id": task_id, "task_type": task_type.value, "args": args}
        record = self.run(message)
        return Result(
            record,
            task_args=args,
            task_id=task_id,
            task_type=task_type.value,
            market_dir=self.settings.data_dir,
        )


def _symbols(value: Sequence[str] | str, settings: Settings) -> list[str]:
    from strategyq.data.symbols import expand_symbols

    return expand_symbols(value, settings.data_dir)


def _record(outcome: RunOutcome, elapsed: float, args: Any = None, **extra: Any) -> dict[str, Any]:
    """The record a worker writes for one run's outcome (same fields, ``worker_id: local``)."""
    timing: dict[str, Any] = {
        "execution_time_ms": round(elapsed * 1000, 3),
        "execution_time_seconds": round(elapsed, 6),
        "worker_id": LOCAL_WORKER_ID,
        "completed_at": utc_now_iso(),
    }
    if isinstance(args, dict):
        timing["task_args"] = args
    if outcome.ok:
        record = records.completed(outcome.data, timing)
    elif outcome.error_type == "cancelled":
        record = records.cancelled(timing["completed_at"], **timing)
    else:
        fields = {**outcome.extra, **timing, **extra}
        fields.setdefault("attempt", 1)
        record = records.error(outcome.error, outcome.error_type, **fields)
    result: dict[str, Any] = orjson.loads(record)
    return result


_session: LocalSession | None = None


def session() -> LocalSession:
    """This process's shared session (started on first use, closed at exit)."""
    global _session
    if _session is None:
        _session = LocalSession()
        atexit.register(_close_session)
    return _session


def _close_session() -> None:
    global _session
    if _session is not None:
        _session.close()
        _session = None


def backtest(
    strategy: str | Path | Callable[..., Any] | type,
    symbols: Sequence[str] | str,
    start: str,
    end: str,
    **task_args: Any,
) -> Result:
    """Backtest ``strategy`` here, through the same engine and sandbox as a worker.

    Args:
        strategy: Source code, a path to a ``.py`` file, or a function or class
            (its source is read with :mod:`inspect`).
        symbols: Tickers (a list, ``"AAPL,MSFT"``, ``"@file.txt"`` or ``"all"``).
        start: First date, ISO 8601.
        end: Last date, ISO 8601.
        **task_args: Any backtest task arg (``hold_days``, ``stop_loss_pct``,
            ``benchmark``, ``params``, ``strict_symbols``, ``task_id``, …).

    Returns:
        A :class:`~strategyq.result.Result`.

    Raises:
        TaskValidationError: the task is invalid (nothing ran). A strategy that
            fails gives a Result whose ``status`` is ``error``.
    """
    return session().backtest(strategy, symbols, start, end, **task_args)


def screen(
    strategy: str | Path | Callable[..., Any] | type,
    universe: Sequence[str] | str,
    limit: int = DEFAULT_SCREENING_LIMIT,
    **task_args: Any,
) -> Result:
    """Screen ``universe`` here with ``strategy`` (``as_of``, ``lookback_sessions``: task args).

    ``universe`` takes the same forms as :func:`backtest`'s ``symbols``.
    """
    return session().screen(strategy, universe, limit, **task_args)


def sweep(
    strategy: str | Path | Callable[..., Any] | type,
    symbols: Sequence[str] | str,
    start: str,
    end: str,
    param_grid: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]],
    *,
    maximize: str = DEFAULT_MAXIMIZE,
    top_n: int = DEFAULT_TOP_N,
    **task_args: Any,
) -> Result:
    """Run a parameter sweep here: a backtest of every combination of ``param_grid``.

    The strategy takes the combination as its second argument (``def f(df, params)``).
    ``constraint``, ``walk_forward``, ``heatmap_params`` and the backtest's task args
    are keyword arguments, as for :func:`strategyq.add_sweep_task`.
    """
    return session().sweep(
        strategy, symbols, start, end, param_grid, maximize=maximize, top_n=top_n, **task_args
    )
