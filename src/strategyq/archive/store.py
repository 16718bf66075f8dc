"""The archive's reads and writes: runs in, searches and results out.

:class:`Archive` is used by the archiver (writes, cursor, retention) and by the
API, the CLI and :func:`strategyq.runs` (searches), so the three answer a
filter identically.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import orjson

from strategyq.archive.db import Database
from strategyq.archive.record import RUN_COLUMNS, ArchivedRun, decompress
from strategyq.archive.schema import METRICS, migrate
from strategyq.errors import ArchiveError, RunNotFound

CURSOR = "feed"
MAX_PAGE = 1000
_METRIC_FILTER = re.compile(r"^\s*([a-z_]+)\s*(>=|<=|!=|>|<|=)\s*(-?[0-9.eE+-]+)\s*$")
SUMMARY_COLUMNS = (
    "task_id",
    "task_type",
    "status",
    "finished_ms",
    "name",
    "tags",
    "fingerprint",
    "symbols",
    "error_type",
    *METRICS,
)


def now_ms() -> int:
    return int(time.time() * 1000)


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass(frozen=True)
class MetricFilter:
    metric: str
    op: str
    value: float

    @classmethod
    def parse(cls, text: str) -> MetricFilter:
        """``sharpe_ratio>1``, ``max_drawdown>=-0.2``, ``num_trades=0``.

        Raises:
            ArchiveError: not of that form, or not a metric the archive keeps.
        """
        found = _METRIC_FILTER.match(text)
        if not found:
            raise ArchiveError(
                f"metric filter {text!r} is not <metric><op><number>; write e.g. "
                "sharpe_ratio>1 or max_drawdown>=-0.2 (ops: > >= < <= = !=)"
            )
        metric, op, number = found.groups()
        if metric not in METRICS:
            raise ArchiveError(
                f"metric filter {text!r}: the archive keeps no metric {metric!r}; "
                f"use one of {', '.join(METRICS)}"
            )
        try:
            value = float(number)
        except ValueError:
            raise ArchiveError(f"metric filter {text!r}: {number!r} is not a number") from None
        return cls(metric, op, value)


def _when(value: str | date | datetime | None, what: str, *, end: bool) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return int(moment.timestamp() * 1000)
    text = value.isoformat() if isinstance(value, date) else str(value).strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
            ms = int(moment.timestamp() * 1000)
            return ms + 86_400_000 - 1 if end else ms
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ArchiveError(
            f"{what} {text!r} is not a date; write 2024-05-01 or 2024-05-01T12:00:00Z"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


@dataclass(frozen=True)
class RunFilter:
    """What to look for among archived runs (every filter given must hold)."""

    name: str | None = None
    tags: tuple[str, ...] = ()
    fingerprint: str | None = None
    symbol: str | None = None
    since: str | date | datetime | None = None
    until: str | date | datetime | None = None
    status: str | None = None
    task_type: str | None = None
    metrics: tuple[MetricFilter, ...] = ()
    limit: int = 50
    before: str | None = None  # the page token of the previous page's last run
    text: str | None = None  # part of the task id
    older_than_ms: int | None = None  # ended before this epoch ms (what Redis still lists)

    @classmethod
    def build(
        cls,
        *,
        name: str | None = None,
        tag: str | Sequence[str] | None = None,
        fingerprint: str | None = None,
        symbol: str | None = None,
        since: str | date | datetime | None = None,
        until: str | date | datetime | None = None,
        status: str | None = None,
        task_type: str | None = None,
        metric: str | Sequence[str] | None = None,
        limit: int = 50,
        before: str | None = None,
        text: str | None = None,
        older_than_ms: int | None = None,
    ) -> RunFilter:
        """A filter from the loose forms the API, the CLI and Python take.

        Raises:
            ArchiveError: a filter that cannot be understood, with the fix.
        """
        tags = (tag,) if isinstance(tag, str) else tuple(tag or ())
        metric_texts = (metric,) if isinstance(metric, str) else tuple(metric or ())
        if not 1 <= int(limit) <= MAX_PAGE:
            raise ArchiveError(f"limit {limit} is out of range; ask for 1 to {MAX_PAGE} runs")
        if before is not None and not re.fullmatch(r"[0-9]+:.+", before):
            raise ArchiveError(
                f"page token {before!r} is not one this archive gave; pass the 'next' value "
                "of the previous page"
            )
        _when(since, "since", end=False)
        _when(until, "until", end=True)
        return cls(
            name=name or None,
            tags=tuple(t for t in tags if t),
            fingerprint=fingerprint or None,
            symbol=symbol.upper() if symbol else None,
            since=since or None,
            until=until or None,
            status=status or None,
            task_type=task_type or None,
            metrics=tuple(MetricFilter.parse(m) for m in metric_texts if m),
            limit=int(limit),
            before=before,
            text=text or None,
            older_than_ms=older_than_ms,
        )

    def where(self) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        for column, value in (
            ("name", self.name),
            ("fingerprint", self.fingerprint),
            ("status", self.status),
            ("task_type", self.task_type),
        ):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        for tag in self.tags:
            clauses.append("task_id IN (SELECT task_id FROM run_tags WHERE tag = ?)")
            params.append(tag)
        if self.symbol:
            clauses.append("task_id IN (SELECT task_id FROM run_symbols WHERE symbol = ?)")
            params.append(self.symbol)
        since = _when(self.since, "since", end=False)
        until = _when(self.until, "until", end=True)
        if since is not None:
            clauses.append("finished_ms >= ?")
            params.append(since)
        if until is not None:
            clauses.append("finished_ms <= ?")
            params.append(until)
        if self.text:
            escaped = self.text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            clauses.append("LOWER(task_id) LIKE LOWER(?) ESCAPE '\\'")
            params.append(f"%{escaped}%")
        if self.older_than_ms is not None:
            clauses.append("finished_ms < ?")
            params.append(self.older_than_ms)
        for m in self.metrics:
            op = "<>" if m.op == "!=" else m.op
            clauses.append(f"{m.metric} {op} ?")
            params.append(m.value)
        if self.before:
            ms, _, task_id = self.before.partition(":")
            clauses.append("(finished_ms < ? OR (finished_ms = ? AND task_id < ?))")
            params.extend([int(ms), int(ms), task_id])
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def summary(row: Sequence[Any]) -> dict[str, Any]:
    """One search hit as plain JSON values."""
    values = dict(zip(SUMMARY_COLUMNS, row, strict=True))
    out: dict[str, Any] = {
        "task_id": values["task_id"],
        "task_type": values["task_type"],
        "status": values["status"],
        "finished_at": iso(int(values["finished_ms"])),
        "name": values["name"],
        "tags": orjson.loads(values["tags"]) if values["tags"] else [],
        "fingerprint": values["fingerprint"],
        "symbols": values["symbols"].split(",") if values["symbols"] else [],
        "error_type": values["error_type"],
    }
    out["metrics"] = {m: values[m] for m in METRICS}
    out["_ms"] = int(values["finished_ms"])
    return out


@dataclass
class Page:
    runs: list[dict[str, Any]]
    next: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


class Archive:
    """The run archive in one database (migrated to the latest schema when opened)."""

    def __init__(self, db: Database, *, migrate_schema: bool = True) -> None:
        self.db = db
        if migrate_schema:
            try:
                migrate(db)
            except BaseException:
                db.close()
                raise

    @classmethod
    def open(cls, url: str) -> Archive:
        return cls(Database(url))

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------------ writes

    def existing(self, task_ids: Sequence[str]) -> set[str]:
        """Which of ``task_ids`` are archived already."""
        found: set[str] = set()
        for i in range(0, len(task_ids), 500):
            part = list(task_ids[i : i + 500])
            marks = ",".join("?" * len(part))
            found.update(
                str(r[0])
                for r in self.db.query(f"SELECT task_id FROM runs WHERE task_id IN ({marks})", part)
            )
        return found

    def write(
        self,
        runs: Sequence[ArchivedRun],
        *,
        cursor: tuple[int, int] | None = None,
        missed: Iterable[tuple[str, str, int | None]] = (),
    ) -> int:
        """Copy ``runs`` (each once: a run archived already is left as it is), record the
        ``missed`` ones (id, reason, finished ms), and move the feed cursor forward to
        ``cursor``, all in one transaction; how many runs were new."""
        stamp = now_ms()
        columns = ", ".join(RUN_COLUMNS)
        marks = ", ".join("?" * len(RUN_COLUMNS))
        metric_cols = ", ".join(METRICS)
        with self.db.transaction() as cur:
            ids = [r.task_id for r in runs]
            have: set[str] = set()
            for i in range(0, len(ids), 500):
                part = ids[i : i + 500]
                self.db.execute(
                    cur,
                    f"SELECT task_id FROM runs WHERE task_id IN ({','.join('?' * len(part))})",
                    part,
                )
                have.update(str(r[0]) for r in cur.fetchall())
            fresh = [r for r in runs if r.task_id not in have]
            fresh = list({r.task_id: r for r in fresh}.values())
            # Another archiver may insert the same runs between the check above and here:
            # the primary key keeps one row, and the count is of the rows this one wrote.
            inserted = self.db.executemany(
                cur,
                f"INSERT INTO runs ({columns}) VALUES ({marks}) ON CONFLICT (task_id) DO NOTHING",
                [r.row(stamp) for r in fresh],
            )
            self.db.executemany(
                cur,
                "INSERT INTO run_tags (task_id, tag) VALUES (?, ?) ON CONFLICT DO NOTHING",
                [(r.task_id, t) for r in fresh for t in r.tags],
            )
            self.db.executemany(
                cur,
                "INSERT INTO run_symbols (task_id, symbol) VALUES (?, ?) ON CONFLICT DO NOTHING",
                [(r.task_id, s) for r in fresh for s in r.symbols],
            )
            self.db.executemany(
                cur,
                f"INSERT INTO sweep_combinations (task_id, rank, combination, params, "
                f"{metric_cols}) VALUES (?, ?, ?, ?, {', '.join('?' * len(METRICS))}) "
                "ON CONFLICT DO NOTHING",
                [
                    (r.task_id, rank, index, params, *values)
                    for r in fresh
                    if r.task_type == "sweep"
                    for rank, index, params, values in r.combinations()
                ],
            )
            self.db.executemany(
                cur,
                "INSERT INTO missed_runs (task_id, reason, finished_ms, detected_ms) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (task_id) DO NOTHING",
                [(t, reason, ms, stamp) for t, reason, ms in missed],
            )
            if cursor is not None:
                self._advance(cur, cursor, stamp)
        return inserted

    def _advance(self, cur: Any, cursor: tuple[int, int], stamp: int) -> None:
        ms, seq = cursor
        self.db.execute(
            cur,
            "INSERT INTO archive_cursor (name, stream_ms, stream_seq, updated_ms) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
            "stream_ms = excluded.stream_ms, stream_seq = excluded.stream_seq, "
            "updated_ms = excluded.updated_ms "
            "WHERE (archive_cursor.stream_ms, archive_cursor.stream_seq) < "
            "(excluded.stream_ms, excluded.stream_seq)",
            (CURSOR, ms, seq, stamp),
        )

    def cursor(self) -> str:
        """The feed position archived up to (``"0-0"``: nothing yet)."""
        rows = self.db.query(
            "SELECT stream_ms, stream_seq FROM archive_cursor WHERE name = ?", (CURSOR,)
        )
        return f"{rows[0][0]}-{rows[0][1]}" if rows else "0-0"

    def missed(self) -> list[tuple[str, str, int | None]]:
        """Runs that ended while the archive was on and were gone from Redis before they
        were copied: (task id, ``evicted`` or ``expired``, finished epoch ms)."""
        return [
            (str(r[0]), str(r[1]), None if r[2] is None else int(r[2]))
            for r in self.db.query(
                "SELECT task_id, reason, finished_ms FROM missed_runs ORDER BY detected_ms, task_id"
            )
        ]

    def prune(self, *, max_age_days: float = 0, max_runs: int = 0) -> int:
        """Delete runs older than ``max_age_days`` and beyond the newest ``max_runs``
        (0: no limit); how many were deleted."""
        deleted = 0
        with self.db.transaction() as cur:
            if max_age_days > 0:
                cutoff = now_ms() - int(max_age_days * 86_400_000)
                self.db.execute(cur, "DELETE FROM runs WHERE finished_ms < ?", (cutoff,))
                deleted += max(cur.rowcount, 0)
            if max_runs > 0:
                self.db.execute(
                    cur,
                    "SELECT finished_ms, task_id FROM runs ORDER BY finished_ms DESC, task_id "
                    "DESC LIMIT 1 OFFSET ?",
                    (max_runs - 1,),
                )
                edge = cur.fetchone()
                if edge is not None:
                    self.db.execute(
                        cur,
                        "DELETE FROM runs WHERE finished_ms < ? OR "
                        "(finished_ms = ? AND task_id < ?)",
                        (edge[0], edge[0], edge[1]),
                    )
                    deleted += max(cur.rowcount, 0)
        return deleted

    def oldest_kept_ms(self) -> int | None:
        rows = self.db.query("SELECT MIN(finished_ms) FROM runs")
        return None if not rows or rows[0][0] is None else int(rows[0][0])

    def count(self) -> int:
        return int(self.db.query("SELECT COUNT(*) FROM runs")[0][0])

    # ------------------------------------------------------------------ reads

    def search(self, flt: RunFilter) -> Page:
        """One page of the runs ``flt`` matches, newest first."""
        where, params = flt.where()
        rows = self.db.query(
            f"SELECT {', '.join(SUMMARY_COLUMNS)} FROM runs{where} "
            "ORDER BY finished_ms DESC, task_id DESC LIMIT ?",
            [*params, flt.limit + 1],
        )
        runs = [summary(r) for r in rows[: flt.limit]]
        token = None
        if len(rows) > flt.limit:
            last = runs[-1]
            token = f"{last['_ms']}:{last['task_id']}"
        for run in runs:
            del run["_ms"]
        return Page(runs, token)

    def result(self, task_id: str) -> dict[str, Any]:
        """The archived result record of ``task_id`` (as Redis held it).

        Raises:
            RunNotFound: no archived run has that id.
        """
        rows = self.db.query("SELECT result FROM runs WHERE task_id = ?", (task_id,))
        if not rows:
            raise RunNotFound(
                f"no archived run {task_id!r}; list runs with 'strategyq runs' or GET /v1/runs"
            )
        return decompress(rows[0][0])

    def run(self, task_id: str) -> dict[str, Any]:
        """One run's summary, args and strategy source.

        Raises:
            RunNotFound: no archived run has that id.
        """
        rows = self.db.query(
            f"SELECT {', '.join(SUMMARY_COLUMNS)}, strategy_code, args, error FROM runs "
            "WHERE task_id = ?",
            (task_id,),
        )
        if not rows:
            raise RunNotFound(
                f"no archived run {task_id!r}; list runs with 'strategyq runs' or GET /v1/runs"
            )
        row = rows[0]
        out = summary(row[: len(SUMMARY_COLUMNS)])
        del out["_ms"]
        code, args, error = row[len(SUMMARY_COLUMNS) :]
        out["strategy_code"] = code
        out["args"] = orjson.loads(args) if args else None
        out["error"] = error
        return out

    def history(
        self, fingerprint: str | None = None, name: str | None = None
    ) -> list[dict[str, Any]]:
        """Every version of a strategy, oldest first: the runs sharing its ``name`` (or, with
        no name, the runs of one ``fingerprint``), with each version's source."""
        if name:
            where, params = "name = ?", [name]
        elif fingerprint:
            where, params = "fingerprint = ?", [fingerprint]
        else:
            raise ArchiveError("a history needs a strategy name or a fingerprint")
        rows = self.db.query(
            f"SELECT {', '.join(SUMMARY_COLUMNS)}, strategy_code FROM runs WHERE {where} "
            "ORDER BY finished_ms, task_id",
            params,
        )
        out = []
        for row in rows:
            run = summary(row[: len(SUMMARY_COLUMNS)])
            del run["_ms"]
            run["strategy_code"] = row[len(SUMMARY_COLUMNS)]
            out.append(run)
        return out

    def names_of(self, fingerprint: str) -> str | None:
        rows = self.db.query(
            "SELECT name FROM runs WHERE fingerprint = ? AND name IS NOT NULL "
            "ORDER BY finished_ms DESC LIMIT 1",
            (fingerprint,),
        )
        return str(rows[0][0]) if rows else None
