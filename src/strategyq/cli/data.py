"""``strategyq data …``: fill and inspect the market data store."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from strategyq.data import MarketData, write_synthetic
from strategyq.data.importer import ImportSummary, import_files
from strategyq.data.sample import load_sample
from strategyq.errors import ImportRejected, StrategyqError
from strategyq.settings import Settings

app = typer.Typer(
    help="Fill and inspect the market data store ($STRATEGYQ_HOME/data).",
    no_args_is_help=True,
    add_completion=False,
)


def _out() -> Console:
    return Console(soft_wrap=True, highlight=False)


def _err() -> Console:
    return Console(stderr=True)


T = TypeVar("T")

_MAX_PROBLEMS_SHOWN = 50


def _data_dir() -> Path:
    return Settings.from_env().data_dir


def _run(action: Callable[[], T]) -> T:
    """Run ``action``; a strategyq error becomes one line on stderr and exit code 1."""
    try:
        return action()
    except ImportRejected as exc:
        table = Table(title="Rejected rows", show_lines=False)
        for column in ("file", "row", "reason"):
            table.add_column(column)
        for file, row, reason in exc.problems[:_MAX_PROBLEMS_SHOWN]:
            table.add_row(file, "" if row is None else str(row), reason)
        _err().print(table)
        if len(exc.problems) > _MAX_PROBLEMS_SHOWN:
            _err().print(f"… and {len(exc.problems) - _MAX_PROBLEMS_SHOWN} more problems")
        _err().print(f"error: {exc}")
        raise typer.Exit(1) from None
    except StrategyqError as exc:
        _err().print(f"error: {exc}")
        raise typer.Exit(1) from None


def _print_import(summary: ImportSummary, what: str) -> None:
    _out().print(
        f"{what}: {summary.rows:,} rows of {len(summary.tickers)} ticker(s) "
        f"({', '.join(summary.tickers[:10])}{' …' if len(summary.tickers) > 10 else ''})"
    )


@app.command()
def sample() -> None:
    """Store the public-domain Quandl WIKI sample (AAPL, GOOG, IBM, MSFT, FB)."""
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
    root = _data_dir()
    summary = _run(lambda: write_synthetic(root, symbols, years, seed))
    _out().print(
        f"synthetic universe stored in {root}: {summary.rows:,} rows of {summary.tickers} "
        f"ticker(s), {summary.first} .. {summary.last}"
    )


@app.command("import")
def import_(
    paths: Annotated[list[Path], typer.Argument(help="CSV or Parquet files.")],
    ticker: Annotated[
        str | None, typer.Option(help="Ticker of one-ticker files (default: the file name).")
    ] = None,
) -> None:
    """Import bars from CSV/Parquet, replacing stored sessions of the same dates."""
    root = _data_dir()
    summary = _run(lambda: import_files(root, paths, ticker))
    _print_import(summary, f"imported into {root}")


@app.command("list")
def list_() -> None:
    """Show every stored ticker with its first and last session."""
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
