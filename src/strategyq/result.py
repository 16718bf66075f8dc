"""``Result``: one task's result record as pandas objects, a plotly figure and an HTML report.

The same object wraps a local run (``strategyq.backtest(...)``), a queue result
(``Result.from_task(redis_client, task_id)``) or any stored record
(``Result(record, task_args=...)``): it reads only the wire's result record
(``{"status", "data", "updated_at"}``), never anything a worker keeps.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from strategyq.errors import StrategyqError

if TYPE_CHECKING:
    import plotly.graph_objects as go
    import redis

# Columns of the result's lists that hold session dates.
_DATE_COLUMNS = ("date", "signal_date", "entry_date", "exit_date")


class ResultNotAvailable(StrategyqError):
    """Raised when a task has no stored result (unknown id, or expired)."""


class Result:
    """A task's result: the raw record, plus its parts as pandas objects.

    Args:
        record: The result record (``status``, ``data``, ``updated_at``) or just its
            ``data``.
        task_args: The task's ``args`` as sent (shown by ``repr`` and kept for reruns).
        task_id: The task's id.
        task_type: ``backtest``, ``screening`` or ``sweep`` (default: from the data).
        market_dir: The market store whose closes ``plot()`` draws under the trades
            (default: the environment's ``$STRATEGYQ_HOME/data``).
    """

    def __init__(
        self,
        record: Mapping[str, Any],
        *,
        task_args: Mapping[str, Any] | None = None,
        task_id: str | None = None,
        task_type: str | None = None,
        market_dir: Path | None = None,
    ) -> None:
        if "status" not in record and "data" not in record:
            record = {"status": "completed", "data": dict(record), "updated_at": None}
        self.raw: dict[str, Any] = dict(record)
        self.task_args: dict[str, Any] = dict(task_args or {})
        self.task_id = task_id
        self.data: dict[str, Any] = dict(self.raw.get("data") or {})
        self.task_type = task_type or _mode_type(self.data.get("execution_mode"))
        self._market_dir = market_dir

    @classmethod
    def from_task(cls, redis_client: redis.Redis, task_id: str) -> Result:
        """The stored result of ``task_id`` on the queue (any status).

        Raises:
            ResultNotAvailable: no record (an unknown id, or expired).
        """
        from strategyq.client import get_task_result

        record = get_task_result(redis_client, task_id)
        if record is None:
            raise ResultNotAvailable(
                f"no result for task {task_id} (unknown id, or expired after "
                "STRATEGYQ_RESULT_TTL); check the id with `strategyq result`"
            )
        return cls(record, task_id=task_id)

    @classmethod
    def from_archive(cls, task_id: str, url: str | None = None) -> Result:
        """The archived result of ``task_id`` (kept past Redis' TTL by ``strategyq archive``),
        with the args it was run with: the same object as :meth:`from_task` gave.

        Args:
            task_id: the run's task id.
            url: the archive (default: ``STRATEGYQ_ARCHIVE_URL``, else SQLite under
                ``$STRATEGYQ_HOME``).

        Raises:
            RunNotFound: no archived run has that id.
        """
        from strategyq.archive import open_archive

        archive = open_archive(url)
        try:
            run = archive.run(task_id)
            record = archive.result(task_id)
        finally:
            archive.close()
        kind = run["task_type"] if run["task_type"] in ("backtest", "screening", "sweep") else None
        return cls(record, task_args=run["args"] or {}, task_id=task_id, task_type=kind)

    # -- status ------------------------------------------------------------------------

    @property
    def status(self) -> str:
        return str(self.raw.get("status"))

    @property
    def ok(self) -> bool:
        return self.status == "completed"

    @property
    def error(self) -> str | None:
        """The error message of a failed task (None otherwise)."""
        return self.data.get("error") if self.status == "error" else None

    @property
    def warnings(self) -> list[str]:
        return list(self.data.get("warnings") or [])

    @property
    def logs(self) -> str:
        """What the strategy printed."""
        return str(self.data.get("logs") or "")

    def raise_for_status(self) -> Result:
        """Raise :class:`StrategyqError` with the task's error when it did not complete."""
        if not self.ok:
            kind = self.data.get("error_type", self.status)
            raise StrategyqError(f"task {self.task_id} {self.status} ({kind}): {self.error}")
        return self

    # -- backtests ---------------------------------------------------------------------

    def _backtest(self) -> dict[str, Any]:
        """The backtest part: the data itself, or a sweep's best combination's."""
        if self.task_type == "sweep":
            return dict(self.data.get("best_result") or {})
        return self.data

    @property
    def metrics(self) -> pd.Series:
        """``performance_metrics`` (a sweep: its best combination's), floats, NaN for null."""
        values = self._backtest().get("performance_metrics") or {}
        series = pd.Series(
            {k: (float("nan") if v is None else v) for k, v in values.items()},
            dtype="float64",
            name="metrics",
        )
        return series

    @property
    def summary(self) -> dict[str, Any]:
        return dict(self._backtest().get("summary") or {})

    @property
    def instances(self) -> pd.DataFrame:
        """What the strategy returned, one row per instance (dates as datetimes)."""
        return _frame(self._backtest().get("instances"))

    @property
    def trades(self) -> pd.DataFrame:
        """The trades, one row each (dates as datetimes, returns as fractions)."""
        return _frame(self._backtest().get("trades"))

    @property
    def equity(self) -> pd.Series:
        """Equity per session, indexed by date."""
        return _curve(self._backtest().get("equity_curve"), "equity")

    @property
    def benchmark(self) -> pd.Series:
        """The benchmark's equity per session (empty without one)."""
        from strategyq.api.charts import benchmark_curve

        found = benchmark_curve(self._backtest())
        if found is None:
            return pd.Series(dtype="float64", name="benchmark")
        return _curve({"dates": found[0], "values": found[1]}, "benchmark")

    @property
    def drawdown(self) -> pd.Series:
        """Equity / running peak − 1 per session (≤ 0, a fraction like ``max_drawdown``)."""
        equity = self.equity
        return (equity / equity.cummax() - 1.0).rename("drawdown")

    # -- screens and sweeps ------------------------------------------------------------

    @property
    def ranked(self) -> pd.DataFrame:
        """A screen's ranked results."""
        return _frame(self.data.get("ranked_results"))

    @property
    def results(self) -> pd.DataFrame:
        """A sweep's combinations, best first: rank, index, one column per param and metric."""
        rows = []
        for row in self.data.get("results") or []:
            flat = {"rank": row.get("rank"), "index": row.get("index")}
            flat.update(row.get("params") or {})
            flat.update({k: v for k, v in (row.get("metrics") or {}).items()})
            rows.append(flat)
        return pd.DataFrame(rows).infer_objects()

    @property
    def best_params(self) -> dict[str, Any]:
        """A sweep's winning combination."""
        return dict((self.data.get("best") or {}).get("params") or {})

    @property
    def heatmap(self) -> pd.DataFrame:
        """A sweep's heatmap: the metric with the y parameter's values as rows, x's as columns."""
        spec = self.data.get("heatmap") or {}
        if not spec:
            return pd.DataFrame()
        frame = pd.DataFrame(
            [[float("nan") if v is None else v for v in row] for row in spec["values"]],
            index=pd.Index(spec["y_values"], name=spec["y"]),
            columns=pd.Index(spec["x_values"], name=spec["x"]),
            dtype="float64",
        )
        return frame

    # -- output ------------------------------------------------------------------------

    def plot(self) -> go.Figure:
        """A plotly figure: a sweep's heatmap; a screen's scores; else equity (with the
        benchmark), drawdown, and the trades on each traded ticker's closes."""
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        if self.task_type == "sweep":
            return self._heatmap_figure()
        if self.task_type == "screening":
            ranked = self.ranked
            fig = go.Figure()
            if not ranked.empty:
                fig.add_bar(x=ranked["ticker"], y=ranked.get("score"), name="score")
            fig.update_layout(title="screen scores")
            return fig
        from strategyq.api.charts import MAX_PRICE_TICKERS, price_figures, traded_tickers

        backtest = self._backtest()
        shown = list(traded_tickers(backtest))[:MAX_PRICE_TICKERS]
        prices = price_figures(backtest, self._store(), tickers=shown)
        rows = 2 + len(prices)
        fig = make_subplots(
            rows=rows,
            cols=1,
            shared_xaxes=True,
            vertical_spacing=0.04,
            row_heights=[3, 1.2] + [2] * len(prices),
            subplot_titles=["equity", "drawdown", *prices],
        )
        equity = self.equity
        fig.add_scatter(x=equity.index, y=equity.values, name="equity", mode="lines", row=1, col=1)
        bench = self.benchmark
        if not bench.empty:
            fig.add_scatter(
                x=bench.index,
                y=bench.values,
                name=f"benchmark {self.summary.get('benchmark') or ''}".strip(),
                mode="lines",
                line={"dash": "dot"},
                row=1,
                col=1,
            )
        dd = self.drawdown
        fig.add_scatter(
            x=dd.index,
            y=(dd * 100).to_numpy(),
            name="drawdown %",
            mode="lines",
            fill="tozeroy",
            row=2,
            col=1,
        )
        for n, spec in enumerate(prices.values(), start=3):
            for trace in spec["data"]:
                fig.add_trace(go.Scatter(**trace), row=n, col=1)
        fig.update_layout(height=360 + 220 * rows, hovermode="x unified")
        return fig

    def _heatmap_figure(self) -> go.Figure:
        import plotly.graph_objects as go

        heat = self.heatmap
        spec = self.data.get("heatmap") or {}
        fig = go.Figure()
        if not heat.empty:
            fig.add_heatmap(
                z=heat.values,
                x=[str(v) for v in heat.columns],
                y=[str(v) for v in heat.index],
                colorbar={"title": spec.get("metric")},
            )
            fig.update_layout(
                title=f"{spec.get('metric')} by {spec.get('x')} and {spec.get('y')}",
                xaxis_title=spec.get("x"),
                yaxis_title=spec.get("y"),
            )
        return fig

    def _store(self) -> Path | None:
        if self._market_dir is not None:
            return self._market_dir
        from strategyq.settings import Settings

        return Settings.from_env().data_dir

    def to_html(self, path: str | Path) -> int:
        """Write the self-contained HTML report (the dashboard's, charts inlined); its size."""
        from strategyq.api.report import write_report

        return write_report(Path(path), self.task_id or "local", self.raw, self._store())

    def _repr_html_(self) -> str:
        head = f"<b>{self.task_type} {self.task_id or ''}</b>: {self.status}"
        if not self.ok:
            return f"{head}<br><pre>{self.error}</pre>"
        if self.task_type == "screening":
            return head + self.ranked.head(20).to_html()
        extra = f" best {self.best_params}" if self.task_type == "sweep" else ""
        return head + extra + self.metrics.to_frame().to_html()

    def __repr__(self) -> str:
        return f"<Result {self.task_type} {self.task_id or ''} {self.status}>"


def _mode_type(mode: Any) -> str:
    return {"screening": "screening", "sweep": "sweep"}.get(str(mode), "backtest")


def _frame(rows: Any) -> pd.DataFrame:
    frame = pd.DataFrame(list(rows or []))
    for column in _DATE_COLUMNS:
        if column in frame.columns:
            frame[column] = pd.to_datetime(frame[column], errors="coerce")
    return frame.infer_objects()


def _curve(curve: Any, name: str) -> pd.Series:
    curve = curve or {}
    dates = pd.to_datetime(list(curve.get("dates") or []))
    values = [float("nan") if v is None else v for v in curve.get("values") or []]
    return pd.Series(values, index=pd.DatetimeIndex(dates, name="date"), dtype="float64", name=name)
