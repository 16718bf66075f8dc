"""Import daily bars from PostgreSQL or TimescaleDB, checked like a file, all or nothing.

The rows stream through the ADBC PostgreSQL driver, which reads PostgreSQL's binary
COPY output straight into Arrow record batches in C (``benchmarks/bench_postgres.py``
compares it with psycopg 3's binary COPY, which builds a Python tuple per row and
took 4-5x as long for 2.5 M rows). Every row is then checked by the same rules as a
CSV file (``strategyq.data.validate``) and the store is written once, atomically.

Credentials come from libpq: the URL, ``PGPASSFILE`` (``~/.pgpass``) or the ``PG*``
variables (``PGPASSWORD``, ``PGHOST``, …). Reports and logs name the database with
the password removed. Workers never connect: only this importer does.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from strategyq.data.importer import ImportSummary
from strategyq.data.schema import normalize_ticker, ticker_problem
from strategyq.data.store import Store
from strategyq.data.validate import (
    NAT_DAY,
    Columns,
    Problem,
    check,
    date_hint,
    flag,
    parse_dates,
    to_bars,
)
from strategyq.errors import DataError, ImportRejected

log = logging.getLogger(__name__)

COLUMNS = ("ticker", "date", "open", "high", "low", "close", "volume")
"""The columns every source must have (after ``--map``)."""
OPTIONAL = ("adj_close",)
_TIMEZONE = re.compile(r"^[A-Za-z0-9_+\-/:]{1,64}$")
URL_SCHEMES = ("postgresql://", "postgres://")


class PostgresError(DataError):
    """Raised when PostgreSQL cannot be reached or refuses the query."""


@dataclass(frozen=True)
class PostgresSource:
    """What to read and how.

    Attributes:
        url: A ``postgresql://`` URL (the password may come from libpq instead).
        table: A table or view (``bars`` or ``schema.bars``), or None with ``query``.
        query: A ``SELECT`` whose rows are bars, or None with ``table``.
        column_map: Our column name -> the source's (``{"date": "ts"}``).
        since: Read sessions from this date on; ``"auto"``: per ticker, from the
            store's last session (that session is read again and upserted).
        timezone: The zone whose calendar date a ``timestamptz`` falls on.
    """

    url: str
    table: str | None = None
    query: str | None = None
    column_map: Mapping[str, str] = field(default_factory=dict)
    since: date | str | None = None
    timezone: str = "UTC"


def is_postgres_url(text: str) -> bool:
    """True when ``text`` names a PostgreSQL database rather than a file."""
    return text.lower().startswith(URL_SCHEMES)


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for reports and logs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def parse_map(text: str | None) -> dict[str, str]:
    """``date=ts,ticker=symbol`` -> ``{"date": "ts", "ticker": "symbol"}``.

    Raises:
        DataError: A pair is malformed or names a column strategyq does not have.
    """
    out: dict[str, str] = {}
    for pair in (text or "").split(","):
        if not pair.strip():
            continue
        ours, sep, theirs = pair.partition("=")
        ours, theirs = ours.strip().lower(), theirs.strip()
        if not sep or not theirs:
            raise DataError(f"--map {pair!r}: write OUR=THEIRS, e.g. --map date=ts,ticker=symbol")
        if ours not in (*COLUMNS, *OPTIONAL):
            raise DataError(
                f"--map {pair!r}: {ours!r} is not a bar column; map one of "
                f"{', '.join((*COLUMNS, *OPTIONAL))}"
            )
        out[ours] = theirs
    return out


def import_postgres(
    root: Path,
    source: PostgresSource,
    *,
    date_format: str | None = None,
    skip_bad_rows: bool = False,
) -> ImportSummary:
    """Read ``source``, check every row and upsert the bars into the store at ``root``.

    Raises:
        PostgresError: The database cannot be reached or refuses the query.
        ImportRejected: Some rows are invalid (and ``skip_bad_rows`` is false);
            nothing was written.
    """
    if (source.table is None) == (source.query is None):
        raise DataError("name what to read: --table TABLE or --query 'SELECT …' (one of them)")
    if not _TIMEZONE.match(source.timezone):
        raise DataError(f"--timezone {source.timezone!r} is not a time zone name")
    _select_source(source)  # a bad --table is refused before connecting
    store = Store(root)
    name = redact(source.url) + (f" table {source.table}" if source.table else " query")
    with _connect(source.url) as conn:
        cursor = conn.cursor()
        _execute(cursor, f"SET TIME ZONE '{source.timezone}'")
        available = _columns_of(cursor, _select_source(source))
        mapping = _resolve(source, available)
        since = _since_clause(source, store, mapping)
        sql = _final_query(source, mapping, since)
        log.info("reading bars from %s", name)
        cols, problems = _read(cursor, sql, name, mapping, source.timezone, date_format)
    check(cols, problems)
    if cols.rows == 0:
        summary = ImportSummary(files=1, tickers=[], rows=0)
        log.info("no new rows in %s", name)
        return summary
    bars = to_bars([cols], problems, skip_bad_rows)
    if not bars.tickers:
        raise ImportRejected(
            "import rejected: no row can be stored; nothing was stored. Fix the rows listed "
            "and import again",
            problems,
        )
    store.upsert(bars)
    log.info(
        "imported %s rows of %s tickers from %s (%s problem(s) skipped)",
        bars.rows,
        len(bars.tickers),
        name,
        len(problems),
    )
    return ImportSummary(files=1, tickers=bars.tickers, rows=bars.rows, skipped=problems)


# -- connection and SQL ----------------------------------------------------------------


class _Connection:
    def __init__(self, url: str) -> None:
        import adbc_driver_postgresql.dbapi as adbc

        self._conn = adbc.connect(url, autocommit=True)

    def cursor(self) -> Any:
        return self._conn.cursor()

    def __enter__(self) -> _Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self._conn.close()


def _connect(url: str) -> _Connection:
    try:
        import adbc_driver_manager
    except ImportError:
        raise PostgresError(
            "the PostgreSQL source needs the adbc-driver-postgresql package; "
            "pip install adbc-driver-postgresql"
        ) from None
    try:
        return _Connection(url)
    except adbc_driver_manager.Error as exc:
        raise PostgresError(
            f"cannot connect to PostgreSQL at {redact(url)}: {_one_line(str(exc))}; check the "
            "URL's host, port, database and user, and the password (in the URL, PGPASSFILE "
            "or PGPASSWORD)"
        ) from None


def _execute(cursor: Any, sql: str) -> None:
    import adbc_driver_manager

    try:
        cursor.execute(sql)
    except adbc_driver_manager.Error as exc:
        raise PostgresError(f"PostgreSQL refused the query: {_one_line(str(exc))}") from None


def _one_line(message: str) -> str:
    message = message.split("\nQuery was:")[0]
    message = re.sub(r"^[A-Z_]+: (\[libpq\] )?", "", message)
    message = re.sub(r"^(Failed to connect|Failed to prepare query): ", "", message)
    message = re.sub(r"\b(FATAL|ERROR):\s+", "", message)
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    # Keep what libpq said, not the caret drawing under the query it echoes.
    kept = [line for line in lines if not line.startswith(("LINE ", "^"))]
    return " ".join(kept).rstrip(".")


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


_PLAIN_PART = r"[A-Za-z_][A-Za-z0-9_$]*"
_QUOTED_PART = r'"(?:[^"]|"")+"'
_TABLE_NAME = re.compile(
    rf"^(?:{_PLAIN_PART}|{_QUOTED_PART})(?:\.(?:{_PLAIN_PART}|{_QUOTED_PART}))?$"
)


def _quote_table(table: str) -> str:
    """``table`` as SQL: plain and double-quoted parts as PostgreSQL reads them."""
    name = table.strip()
    if not _TABLE_NAME.match(name):
        raise DataError(
            f"--table {table!r} is not a table name: write name or schema.name (double-quote "
            "a part with other characters: '\"My Bars\"'), or read it with --query"
        )
    return name


def _select_source(source: PostgresSource) -> str:
    if source.table is not None:
        return f"SELECT * FROM {_quote_table(source.table)}"
    query = (source.query or "").strip().rstrip(";")
    return query


def _columns_of(cursor: Any, select: str) -> list[str]:
    _execute(cursor, f"SELECT * FROM ({select}) AS src LIMIT 0")
    names: list[str] = cursor.fetch_arrow_table().column_names
    return names


def _resolve(source: PostgresSource, available: list[str]) -> dict[str, str]:
    lower = {c.lower(): c for c in available}
    mapping: dict[str, str] = {}
    missing: list[str] = []
    for ours in (*COLUMNS, *OPTIONAL):
        theirs = source.column_map.get(ours, ours)
        found = theirs if theirs in available else lower.get(theirs.lower())
        if found is not None:
            mapping[ours] = found
        elif ours in COLUMNS or ours in source.column_map:
            missing.append(f"{ours} (looked for {theirs!r})")
    if missing:
        raise DataError(
            f"the source has no column for {', '.join(missing)}; it has "
            f"{', '.join(available) or 'no columns'}. Name them with --map, "
            "e.g. --map date=ts,ticker=symbol"
        )
    return mapping


def _since_clause(source: PostgresSource, store: Store, mapping: dict[str, str]) -> str:
    day = f"CAST(src.{_quote_ident(mapping['date'])} AS date)"
    if source.since is None:
        return ""
    if isinstance(source.since, date):
        return f" WHERE {day} >= DATE '{source.since.isoformat()}'"
    if source.since != "auto":
        raise DataError(f"--since {source.since!r}: write a date (YYYY-MM-DD) or auto")
    last = {t: e.last for t, e in store.manifest().tickers.items()}
    if not last:
        return ""  # an empty store: read everything
    # Stored tickers obey schema rules (letters, digits, . - ^ = _ /), so quoting the
    # literals is enough; a ticker the store does not have is read in full.
    tickers = ",".join("'" + t.replace("'", "''") + "'" for t in last)
    days = ",".join(f"'{d.isoformat()}'" for d in last.values())
    key = f"upper(btrim(CAST(src.{_quote_ident(mapping['ticker'])} AS text)))"
    return (
        f" LEFT JOIN unnest(ARRAY[{tickers}]::text[], ARRAY[{days}]::date[]) AS known(t, last)"
        f" ON {key} = known.t WHERE known.last IS NULL OR {day} >= known.last"
    )


def _final_query(source: PostgresSource, mapping: dict[str, str], since: str) -> str:
    picked = ", ".join(f"src.{_quote_ident(theirs)} AS {ours}" for ours, theirs in mapping.items())
    return f"SELECT {picked} FROM ({_select_source(source)}) AS src{since}"


# -- Arrow batches to checked columns ---------------------------------------------------


def _batches(cursor: Any, sql: str) -> Iterator[pa.RecordBatch]:
    """The result's record batches, read ahead by a thread.

    The driver decodes the next batch (in C, without the GIL) while this thread
    converts the previous one, so the conversion hides behind the network.
    """
    import adbc_driver_manager

    _execute(cursor, sql)
    reader = cursor.fetch_record_batch()
    handoff: queue.Queue[pa.RecordBatch | BaseException | None] = queue.Queue(maxsize=4)
    stop = threading.Event()

    def pump() -> None:
        try:
            for batch in reader:
                while not stop.is_set():
                    try:
                        handoff.put(batch, timeout=0.5)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            handoff.put(None)
        except BaseException as exc:  # handed to the consumer, which raises it
            handoff.put(exc)

    thread = threading.Thread(target=pump, name="postgres-reader", daemon=True)
    thread.start()
    try:
        while True:
            item = handoff.get()
            if item is None:
                return
            if isinstance(item, adbc_driver_manager.Error):
                raise PostgresError(
                    f"PostgreSQL failed while sending rows: {_one_line(str(item))}"
                ) from None
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


def _read(
    cursor: Any,
    sql: str,
    name: str,
    mapping: dict[str, str],
    timezone: str,
    date_format: str | None,
) -> tuple[Columns, list[Problem]]:
    batches: list[pa.RecordBatch] = []
    code_of: dict[str, int] = {}
    names: list[str] = []
    codes: list[npt.NDArray[np.int64]] = []
    days: list[npt.NDArray[np.int32]] = []
    values: dict[str, list[npt.NDArray[np.float64]]] = {
        c: [] for c in mapping if c not in ("ticker", "date")
    }
    for batch in _batches(cursor, sql):
        if batch.num_rows == 0:
            continue
        batches.append(batch)
        codes.append(_ticker_codes(batch.column("ticker"), code_of, names))
        days.append(_day_numbers(batch.column("date"), timezone, date_format))
        for col, parts in values.items():
            parts.append(_floats(batch.column(col)))

    def shown(row: int, col: str) -> str:
        for batch in batches:
            if row < batch.num_rows:
                value = batch.column(col)[row].as_py()
                return "NULL" if value is None else str(value)
            row -= batch.num_rows
        return "?"

    cols = Columns(
        source=name,
        names=names,
        codes=np.concatenate(codes) if codes else np.zeros(0, np.int64),
        days=np.concatenate(days) if days else np.zeros(0, np.int32),
        values={c: np.concatenate(p) if p else np.zeros(0, np.float64) for c, p in values.items()},
        shown=shown,
        lines=None,
        date_hint=date_hint(date_format),
    )
    problems: list[Problem] = []
    for code, ticker in enumerate(names):
        reason = ticker_problem(ticker)
        if reason:
            flag(problems, cols, cols.codes == code, _always(reason), reason)
    return cols, problems


def _always(reason: str) -> Callable[[int], str]:
    return lambda _row: reason


def _ticker_codes(
    column: pa.Array, code_of: dict[str, int], names: list[str]
) -> npt.NDArray[np.int64]:
    text = pc.fill_null(_plain(column).cast(pa.string()), "")
    encoded = pc.dictionary_encode(text)
    local = np.empty(len(encoded.dictionary), dtype=np.int64)
    for i, raw in enumerate(encoded.dictionary.to_pylist()):
        ticker = normalize_ticker(str(raw))
        if ticker not in code_of:
            code_of[ticker] = len(names)
            names.append(ticker)
        local[i] = code_of[ticker]
    out: npt.NDArray[np.int64] = local[encoded.indices.to_numpy(zero_copy_only=False)]
    return out


def _day_numbers(column: pa.Array, timezone: str, date_format: str | None) -> npt.NDArray[np.int32]:
    column = _plain(column)
    kind = column.type
    if pa.types.is_date(kind):
        days = column.cast(pa.date32()).cast(pa.int32())
        out: npt.NDArray[np.int32] = _numpy(days, NAT_DAY, np.int32)
        return out
    if pa.types.is_timestamp(kind):
        if kind.tz is not None:
            # The session is the calendar date in the exchange's zone.
            column = pc.local_timestamp(column.cast(pa.timestamp(kind.unit, tz=timezone)))
        stamps = column.to_numpy(zero_copy_only=False).astype("datetime64[D]")
        return np.where(np.isnat(stamps), NAT_DAY, stamps.astype(np.int64)).astype(np.int32)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return parse_dates(pd.Series(column.to_pylist(), dtype=object).fillna(""), date_format)
    return np.full(len(column), NAT_DAY, dtype=np.int32)


def _plain(column: pa.Array) -> pa.Array:
    # The driver hands types Arrow has no match for (NUMERIC, …) as an opaque
    # extension over their text form.
    if isinstance(column.type, pa.BaseExtensionType):
        return column.storage
    return column


def _numpy(column: pa.Array, missing: object, dtype: Any) -> Any:
    """``column`` as numpy, ``missing`` for nulls; a view of Arrow's buffer when none is null."""
    if column.null_count:
        column = pc.fill_null(column, missing)
    return column.to_numpy(zero_copy_only=False).astype(dtype, copy=False)


def _floats(column: pa.Array) -> npt.NDArray[np.float64]:
    column = _plain(column)
    kind = column.type
    if pa.types.is_floating(kind) or pa.types.is_integer(kind) or pa.types.is_decimal(kind):
        floats: npt.NDArray[np.float64] = _numpy(column.cast(pa.float64()), np.nan, np.float64)
        return floats
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        try:
            # NUMERIC and text holding numbers: Arrow's own cast, when every value reads.
            cast = pc.cast(column, pa.float64())
            return np.asarray(
                pc.fill_null(cast, np.nan).to_numpy(zero_copy_only=False), dtype=np.float64
            )
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
        # Some values are not numbers: each is reported with its value.
        parsed = pd.to_numeric(pd.Series(column.to_pylist(), dtype=object), errors="coerce")
        return np.asarray(parsed, dtype=np.float64)
    return np.full(len(column), np.nan)
