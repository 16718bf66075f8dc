"""``strategyq data …``: fill and inspect the market data store."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer

from strategyq.errors import DataError, ImportRejected, StrategyqError
from strategyq.settings import Settings

if TYPE_CHECKING:
    from rich.console import Console

    # strategyq.data imports pandas, numpy and pyarrow (most of a second): each command
    # imports what it uses when it runs, so `strategyq --help` starts without them.
    from strategyq.data.importer import ImportSummary
    from strategyq.data.postgres import PostgresSource
    from strategyq.data.validate import Problem

app = typer.Typer(
    help="Fill and inspect the market data store ($STRATEGYQ_HOME/data).",
    no_args_is_help=True,
    add_completion=False,
)


def _out() -> Console:
    from rich.console import Console

    return Console(soft_wrap=True, highlight=False)


def _err() -> Console:
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True, highlight=False)


T = TypeVar("T")

_MAX_PROBLEMS_SHOWN = 50


def _data_dir() -> Path:
    return Settings.from_env().data_dir


def _run(action: Callable[[], T]) -> T:
    """Run ``action``; a strategyq error becomes one line on stderr and exit code 1."""
    try:
        return action()
    except ImportRejected as exc:
        _print_problems("Rejected rows", exc.problems)
        _err().print(f"error: {exc}")
        raise typer.Exit(1) from None
    except StrategyqError as exc:
        _err().print(f"error: {exc}")
        raise typer.Exit(1) from None


def _print_problems(title: str, problems: Sequence[Problem]) -> None:
    from rich.table import Table

    table = Table(title=title, show_lines=False)
    for column in ("source", "line", "reason"):
        table.add_column(column)
    for source, line, reason in problems[:_MAX_PROBLEMS_SHOWN]:
        table.add_row(source, "" if line is None else str(line), reason)
    _err().print(table)
    if len(problems) > _MAX_PROBLEMS_SHOWN:
        _err().print(f"… and {len(problems) - _MAX_PROBLEMS_SHOWN} more problems")


def _print_import(summary: ImportSummary, what: str) -> None:
    _out().print(
        f"{what}: {summary.rows:,} rows of {len(summary.tickers)} ticker(s) "
        f"({', '.join(summary.tickers[:10])}{' …' if len(summary.tickers) > 10 else ''})"
    )


@app.command()
def sample() -> None:
    """Store the public-domain Quandl WIKI sample (AAPL, GOOG, IBM, MSFT, FB)."""
    from strategyq.data.sample import load_sample

    root = _data_dir()
    summary = _run(lambda: load_sample(root))
    _print_import(summary, f"sample stored in {root}")


@app.command()
def synth(
    symbols: Annotated[int, typer.Option(help="How many tickers (SYN0001, SYN0002, …).")] = 100,
    years: Annotated[float, typer.Option(help="Years of business-day sessions.")] = 2.0,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives the same data.")] = 1,
) -> None:
    """Store a deterministic synthetic universe for scale tests and benchmarks."""
    from strategyq.data import write_synthetic

    root = _data_dir()
    summary = _run(lambda: write_synthetic(root, symbols, years, seed))
    _out().print(
        f"synthetic universe stored in {root}: {summary.rows:,} rows of {summary.tickers} "
        f"ticker(s), {summary.first} .. {summary.last}"
    )


@app.command("import")
def import_(
    sources: Annotated[
        list[str], typer.Argument(help="CSV/Parquet files, or one postgresql:// URL.")
    ],
    ticker: Annotated[
        str | None, typer.Option(help="Ticker of one-ticker files (default: the file name).")
    ] = None,
    date_format: Annotated[
        str | None,
        typer.Option(help="strptime format of text dates that are not YYYY-MM-DD (%m/%d/%Y)."),
    ] = None,
    skip_bad_rows: Annotated[
        bool, typer.Option(help="Store the good rows and list the bad ones instead of refusing.")
    ] = False,
    table: Annotated[
        str | None, typer.Option(help="PostgreSQL: the table or view to read (schema.name).")
    ] = None,
    query: Annotated[
        str | None, typer.Option(help="PostgreSQL: a SELECT whose rows are bars.")
    ] = None,
    map_: Annotated[
        str | None,
        typer.Option("--map", help="PostgreSQL: our=their column names, e.g. date=ts,ticker=sym."),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(help="PostgreSQL: YYYY-MM-DD, or auto: each ticker from its last session."),
    ] = None,
    timezone: Annotated[
        str, typer.Option(help="PostgreSQL: the zone whose date a timestamptz falls on.")
    ] = "UTC",
) -> None:
    """Import bars from CSV/Parquet files or PostgreSQL, replacing stored sessions of those dates.

    Every row is checked first; one bad row refuses the whole import (nothing is
    stored) unless --skip-bad-rows is given.
    """
    from strategyq.data.postgres import is_postgres_url

    root = _data_dir()
    if sources and is_postgres_url(sources[0]):
        if len(sources) > 1 or ticker:
            _err().print("error: import one PostgreSQL URL at a time, without files or --ticker")
            raise typer.Exit(1)
        pg = _postgres_source(sources[0], table, query, map_, since, timezone)
        summary = _import_postgres(root, pg, date_format, skip_bad_rows)
    else:
        if table or query or map_ or since:
            _err().print(
                "error: --table, --query, --map and --since read from PostgreSQL; "
                "name a postgresql:// URL first"
            )
            raise typer.Exit(1)
        summary = _import_files(root, sources, ticker, date_format, skip_bad_rows)
    _print_imported(summary, root)


def _postgres_source(
    url: str,
    table: str | None,
    query: str | None,
    map_: str | None,
    since: str | None,
    timezone: str,
) -> PostgresSource:
    from strategyq.data.postgres import PostgresSource, parse_map

    return _run(
        lambda: PostgresSource(
            url=url,
            table=table,
            query=query,
            column_map=parse_map(map_),
            since=_since(since),
            timezone=timezone,
        )
    )


def _import_postgres(
    root: Path, source: PostgresSource, date_format: str | None, skip_bad_rows: bool
) -> ImportSummary:
    from strategyq.data.postgres import import_postgres

    return _run(
        lambda: import_postgres(root, source, date_format=date_format, skip_bad_rows=skip_bad_rows)
    )


def _import_files(
    root: Path,
    sources: list[str],
    ticker: str | None,
    date_format: str | None,
    skip_bad_rows: bool,
) -> ImportSummary:
    from strategyq.data.importer import import_files

    return _run(
        lambda: import_files(
            root,
            [Path(p) for p in sources],
            ticker,
            date_format=date_format,
            skip_bad_rows=skip_bad_rows,
        )
    )


def _print_imported(summary: ImportSummary, root: Path) -> None:
    if summary.skipped:
        _print_problems("Skipped rows", summary.skipped)
    _print_import(summary, f"imported into {root}")
    if summary.skipped:
        _out().print(f"{len(summary.skipped)} problem(s) skipped (listed above)")


def _since(text: str | None) -> date | str | None:
    if text is None or text.strip().lower() == "auto":
        return None if text is None else "auto"
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise DataError(f"--since {text!r}: write a date (YYYY-MM-DD) or auto") from None


@app.command("list")
def list_() -> None:
    """Show every stored ticker with its first and last session."""
    from rich.table import Table

    from strategyq.data import MarketData

    root = _data_dir()
    entries = _run(lambda: MarketData(root, cache_mb=0).entries())
    if not entries:
        _out().print(f"the store at {root} is empty; run `strategyq data sample` or `data import`")
        return
    table = Table(title=f"Market data in {root}")
    for column, justify in (
        ("ticker", "left"),
        ("first", "left"),
        ("last", "left"),
        ("rows", "right"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    for name, entry in entries.items():
        table.add_row(name, str(entry.first), str(entry.last), f"{entry.rows:,}")
    _out().print(table)
    _out().print(f"{len(entries)} ticker(s), {sum(e.rows for e in entries.values()):,} rows")


@app.command()
def info(ticker: Annotated[str, typer.Argument(help="The ticker to describe.")]) -> None:
    """Show one ticker's range and its latest bar."""
    from rich.table import Table

    from strategyq.data import MarketData

    root = _data_dir()
    market = MarketData(root, cache_mb=0)
    name = ticker.strip().upper()
    entries = _run(market.entries)
    if name not in entries:
        _err().print(f"error: {name} is not in the store at {root}; see `strategyq data list`")
        raise typer.Exit(1)
    entry = entries[name]
    last = _run(
        lambda: market.load([name], entry.last, entry.last, adjusted=False, warmup_sessions=0)
    )
    row = last.frame.iloc[-1]
    table = Table(title=name, show_header=False)
    table.add_column("field")
    table.add_column("value", justify="right")
    table.add_row("first session", str(entry.first))
    table.add_row("last session", str(entry.last))
    table.add_row("rows", f"{entry.rows:,}")
    for field in ("open", "high", "low", "close"):
        table.add_row(f"last {field} (as traded)", f"{row[field]:,.4f}")
    table.add_row("last volume", f"{row['volume']:,.0f}")
    table.add_row("adjustment factor", f"{row['adj_factor']:.6g}")
    _out().print(table)
