"""The archive's tables and their versioned migrations, run on start.

Each migration is a list of statements applied in one transaction together
with the bump of ``schema_version``; a database whose version is above the
last migration here was written by a newer strategyq, and is refused (an old
archiver must not write rows a newer one cannot read).
"""

from __future__ import annotations

import logging

from strategyq.archive.db import Database, describe
from strategyq.errors import ArchiveSchemaNewer

log = logging.getLogger(__name__)

METRICS: tuple[str, ...] = (
    "total_return",
    "sharpe_ratio",
    "sortino_ratio",
    "max_drawdown",
    "cagr",
    "win_rate",
    "num_trades",
    "profit_factor",
    "volatility",
    "calmar_ratio",
    "exposure",
)
"""The headline metrics, one column each (a backtest's ``performance_metrics``, a sweep's
best combination's); ``GET /v1/runs?metric=sharpe_ratio>1`` filters on them."""


def _v1(db: Database) -> list[str]:
    metric_cols = ",\n  ".join(f"{m} DOUBLE PRECISION" for m in METRICS)
    return [
        f"""CREATE TABLE runs (
  task_id TEXT PRIMARY KEY,
  task_type TEXT NOT NULL,
  status TEXT NOT NULL,
  finished_ms BIGINT NOT NULL,
  archived_ms BIGINT NOT NULL,
  name TEXT,
  tags TEXT,
  fingerprint TEXT,
  strategy_code TEXT,
  args TEXT,
  symbols TEXT,
  error_type TEXT,
  error TEXT,
  {metric_cols},
  result_bytes BIGINT NOT NULL,
  result {db.blob} NOT NULL
)""",
        "CREATE INDEX runs_finished ON runs (finished_ms, task_id)",
        "CREATE INDEX runs_fingerprint ON runs (fingerprint, finished_ms)",
        "CREATE INDEX runs_name ON runs (name, finished_ms)",
        "CREATE INDEX runs_type_status ON runs (task_type, status, finished_ms)",
        *(f"CREATE INDEX runs_{m} ON runs ({m})" for m in ("sharpe_ratio", "total_return")),
        """CREATE TABLE run_tags (
  task_id TEXT NOT NULL REFERENCES runs (task_id) ON DELETE CASCADE,
  tag TEXT NOT NULL,
  PRIMARY KEY (task_id, tag)
)""",
        "CREATE INDEX run_tags_tag ON run_tags (tag)",
        """CREATE TABLE run_symbols (
  task_id TEXT NOT NULL REFERENCES runs (task_id) ON DELETE CASCADE,
  symbol TEXT NOT NULL,
  PRIMARY KEY (task_id, symbol)
)""",
        "CREATE INDEX run_symbols_symbol ON run_symbols (symbol)",
        f"""CREATE TABLE sweep_combinations (
  task_id TEXT NOT NULL REFERENCES runs (task_id) ON DELETE CASCADE,
  rank INTEGER NOT NULL,
  combination INTEGER,
  params TEXT NOT NULL,
  {metric_cols},
  PRIMARY KEY (task_id, rank)
)""",
        """CREATE TABLE missed_runs (
  task_id TEXT PRIMARY KEY,
  reason TEXT NOT NULL,
  finished_ms BIGINT,
  detected_ms BIGINT NOT NULL
)""",
        """CREATE TABLE archive_cursor (
  name TEXT PRIMARY KEY,
  stream_ms BIGINT NOT NULL,
  stream_seq BIGINT NOT NULL,
  updated_ms BIGINT NOT NULL
)""",
    ]


MIGRATIONS = (_v1,)
"""Migration ``n`` (1-based) brings the schema from version n-1 to n."""

LATEST = len(MIGRATIONS)


def current_version(db: Database) -> int:
    with db.transaction() as cur:
        db.execute(cur, "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        db.execute(cur, "SELECT MAX(version) FROM schema_version")
        row = cur.fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def migrate(db: Database) -> int:
    """Bring the schema to :data:`LATEST`; the version it is at.

    Raises:
        ArchiveSchemaNewer: the database was written by a newer strategyq.
    """
    version = current_version(db)
    if version > LATEST:
        raise ArchiveSchemaNewer(
            f"the run archive at {describe(db.url)} has schema version {version}, and this "
            f"strategyq knows versions up to {LATEST}: upgrade strategyq on this machine "
            "(pip install -U strategyq, or the newer image) to the version that wrote it, or "
            "point STRATEGYQ_ARCHIVE_URL at another database"
        )
    for target in range(version + 1, LATEST + 1):
        with db.transaction() as cur:
            # Two archivers starting at once: the second waits for the first's migration
            # (SQLite: BEGIN IMMEDIATE; PostgreSQL: the lock below) and then finds it done.
            if db.dialect == "postgresql":
                db.execute(cur, "LOCK TABLE schema_version IN EXCLUSIVE MODE")
            db.execute(cur, "SELECT MAX(version) FROM schema_version")
            row = cur.fetchone()
            if row and row[0] is not None and int(row[0]) >= target:
                continue
            for statement in MIGRATIONS[target - 1](db):
                db.execute(cur, statement)
            db.execute(cur, "INSERT INTO schema_version (version) VALUES (?)", (target,))
        log.info("run archive schema migrated to version %s", target)
    return LATEST
