"""The run archive: every run that ends, kept in SQL past Redis' result TTL.

- :mod:`~strategyq.archive.archiver`: the process that copies runs in
  (``strategyq archive``, or ``strategyq serve --archive``);
- :mod:`~strategyq.archive.schema`: the tables and their versioned migrations;
- :mod:`~strategyq.archive.record`: one run as stored (fingerprint, metric
  columns, compressed result);
- :mod:`~strategyq.archive.store`: writes, searches and results;
- :mod:`~strategyq.archive.db`: SQLite or PostgreSQL behind one small class.

``runs(...)`` and ``load_result(id)`` are the Python entry points.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING, Any

from strategyq.archive.store import Archive, RunFilter

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Archive", "RunFilter", "load_result", "open_archive", "runs"]


def open_archive(url: str | None = None) -> Archive:
    """The archive at ``url``, else at ``STRATEGYQ_ARCHIVE_URL``, else SQLite under
    ``$STRATEGYQ_HOME``."""
    if url is None:
        from strategyq.settings import Settings

        url = Settings.from_env().archive_db_url
    return Archive.open(url)


def runs(
    *,
    name: str | None = None,
    tag: str | list[str] | None = None,
    fingerprint: str | None = None,
    symbol: str | None = None,
    since: str | date | datetime | None = None,
    until: str | date | datetime | None = None,
    status: str | None = None,
    task_type: str | None = None,
    metric: str | list[str] | None = None,
    limit: int = 1000,
    url: str | None = None,
) -> pd.DataFrame:
    """Archived runs as a DataFrame, one row per run, newest first, the metrics as columns.

    The filters are those of ``GET /v1/runs`` and ``strategyq runs``:

    >>> strategyq.runs(name="sma cross", metric="sharpe_ratio>1")  # doctest: +SKIP

    Args:
        name: the runs' ``name`` task arg.
        tag: one tag, or several that must all be present.
        fingerprint: every version's runs share none; one version's runs share one.
        symbol: runs over this ticker.
        since: ended on or after (a date or an ISO 8601 time).
        until: ended on or before.
        status: completed, error or cancelled.
        task_type: backtest, screening or sweep.
        metric: ``"sharpe_ratio>1"`` or a list of such conditions.
        limit: at most this many runs.
        url: the archive (default: as :func:`open_archive`).
    """
    import pandas as pd

    from strategyq.archive.schema import METRICS

    flt = RunFilter.build(
        name=name,
        tag=tag,
        fingerprint=fingerprint,
        symbol=symbol,
        since=since,
        until=until,
        status=status,
        task_type=task_type,
        metric=metric,
        limit=limit,
    )
    archive = open_archive(url)
    try:
        page = archive.search(flt)
    finally:
        archive.close()
    rows = [{k: v for k, v in run.items() if k != "metrics"} | run["metrics"] for run in page.runs]
    columns = [
        "task_id",
        "task_type",
        "status",
        "finished_at",
        "name",
        "tags",
        "fingerprint",
        "symbols",
        "error_type",
        *METRICS,
    ]
    frame = pd.DataFrame(rows, columns=columns)
    frame["finished_at"] = pd.to_datetime(frame["finished_at"], utc=True)
    for m in METRICS:
        frame[m] = frame[m].astype("float64")
    return frame


def load_result(task_id: str, url: str | None = None) -> dict[str, Any]:
    """The archived result record of ``task_id``: the ``{"status", "data", "updated_at"}``
    dict Redis held when the run ended.

    Raises:
        RunNotFound: no archived run has that id.
    """
    archive = open_archive(url)
    try:
        return archive.result(task_id)
    finally:
        archive.close()
