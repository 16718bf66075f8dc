"""``run_backtest``: instances + bars + trade model → the backtest result (plain JSON)."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from strategyq.engine.batch import metrics_many
from strategyq.engine.columnar import column_instances, column_signals, grid_column_signals
from strategyq.engine.instances import InstanceFacts
from strategyq.engine.jsonvalues import date_to_day, day_to_iso, iso_seconds, parse_timestamp
from strategyq.engine.market import Market, as_market, market_from_frame
from strategyq.engine.outcome import simulate_columns
from strategyq.engine.report import (
    backtest_result,
    backtest_summary,
    benchmark_summary,
    data_shape,
    signal_counts,
)
from strategyq.engine.signals import (
    SignalColumns,
    columns_from,
    normalized_instances,
    signal_columns,
)
from strategyq.errors import DataError, EngineError
from strategyq.trademodel import TradeModel

logger = logging.getLogger(__name__)


def run_backtest(
    instances: Any,
    df: pd.DataFrame | Market,
    model: TradeModel,
    *,
    start: dt.datetime | None,
    end: dt.datetime | None,
    max_instances: int = 10_000,
    max_trades: int = 10_000,
    benchmark: pd.DataFrame | Market | None = None,
    benchmark_symbol: str | None = None,
) -> dict[str, Any]:
    """Turn a strategy's instances into trades, an equity curve and metrics.

    Args:
        instances: the strategy's output (list of dicts or a DataFrame), or
            :class:`NormalizedInstances` already built, or a mapping of
            equal-length lists (``{"ticker": [...], "date": [...], ...}``: a
            returned DataFrame as a sandbox child sends it), read column-wise
            when their shape allows it (see :mod:`strategyq.engine.columnar`)
            and as the rows they make otherwise; the result is the same.
        df: bars sorted by (ticker, date); may include warm-up rows before ``start``.
            Or the :class:`Market` that ``market_from_frame`` built from them.
        model: the trade model.
        start, end: the backtest's range (inclusive, by date); ``None`` means
            the first/last date in ``df``. Signals outside it make no trade.
        max_instances, max_trades: caps on the lists returned (the summary
            counts everything).
        benchmark: bars of one ticker to compare against (``benchmark_symbol``
            names it; default: its only ticker); without it, the equal-weight
            buy-and-hold of the backtest's own symbols.

    Returns:
        A plain-JSON dict with ``instances``, ``summary``,
        ``performance_metrics``, ``equity_curve``, ``benchmark_curve``,
        ``trades`` and ``warnings``.

    Raises:
        EngineError: an instance is malformed (the message names it).
        DataError: the bars are malformed.
    """
    full = as_market(df)
    first, last = _range(full, start, end)
    market = full.window(first.date() if start else None, last.date() if end else None)
    described, cols = _instances(instances, market, date_to_day(first.date()) if start else None)
    model = model.resolved(described.has_exits)
    bench, bench_name = _benchmark(benchmark, benchmark_symbol, first, last)
    outcome = simulate_columns(market, cols, model, bench)
    counts = signal_counts(outcome, cols, described.unknown_count)
    summary = backtest_summary(
        described,
        cols,
        outcome,
        model,
        counts,
        date_range=[iso_seconds(first), iso_seconds(last)],
        symbols=len(full.symbols),
        shape=data_shape(df, full),
        benchmark=benchmark_summary(bench, bench_name, market),
        max_instances=max_instances,
        max_trades=max_trades,
    )
    logger.debug("backtest: %s signals, %s trades", len(cols.codes), len(outcome.taken))
    return backtest_result(
        described, cols, outcome, model, market, counts, summary, max_instances, max_trades
    )


def _instances(
    instances: Any, market: Market, first_day: int | None
) -> tuple[InstanceFacts, SignalColumns]:
    """What the report needs of the instances, and their signal arrays."""
    if _is_columns(instances):
        read = column_instances(instances, market, first_day)
        if read is not None:
            described, fast = read
            return described, columns_from(fast)
        instances = _rows(instances)
    normalized = normalized_instances(instances, market)
    return normalized, signal_columns(normalized, market, first_day)


def _is_columns(instances: Any) -> bool:
    """Whether ``instances`` is a mapping of equal-length lists (a frame sent as columns)."""
    if not isinstance(instances, Mapping):
        return False
    values = list(instances.values())
    return (
        bool(values)
        and all(isinstance(v, list | tuple | np.ndarray) for v in values)
        and len({len(v) for v in values}) == 1
    )


def _rows(columns: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """The row dicts that equal-length columns make, fields in column order."""
    names = list(columns)
    return [dict(zip(names, row, strict=True)) for row in zip(*columns.values(), strict=True)]


def backtest_metrics(
    instances: Any,
    df: pd.DataFrame | Market,
    model: TradeModel,
    *,
    start: dt.datetime | None,
    end: dt.datetime | None,
    benchmark: pd.DataFrame | Market | None = None,
    benchmark_symbol: str | None = None,
) -> dict[str, Any]:
    """The ``performance_metrics`` that :func:`run_backtest` reports for the same arguments.

    Only the metrics: no instance records, trades or curves are built, which
    is most of a small backtest's cost (a sweep keeps only the metrics of all
    but its best combination). ``instances`` may also be a mapping of
    equal-length columns (``{"ticker": [...], "date": [...], "entry": [...]}``),
    read column-wise when their shape allows it (see
    :mod:`strategyq.engine.columnar`) and as the rows they make otherwise.

    Raises:
        EngineError: an instance is malformed (the message names it).
        DataError: the bars are malformed.
    """
    full = as_market(df)
    first, last = _range(full, start, end)
    market = full.window(first.date() if start else None, last.date() if end else None)
    first_day = date_to_day(first.date()) if start else None
    cols, model = _signals(instances, market, first_day, model, {})
    bench, _ = _benchmark(benchmark, benchmark_symbol, first, last)
    outcome = simulate_columns(market, cols, model, bench)
    return outcome.metrics


def backtest_metrics_many(
    runs: Sequence[Any],
    df: pd.DataFrame | Market,
    models: Sequence[TradeModel],
    *,
    start: dt.datetime | None,
    end: dt.datetime | None,
    benchmark: pd.DataFrame | Market | None = None,
    benchmark_symbol: str | None = None,
) -> list[dict[str, Any]]:
    """:func:`backtest_metrics` of each of ``runs`` with the model at its position in ``models``.

    The runs that share a trade model are simulated together
    (:mod:`strategyq.engine.batch`); each result equals, bit for bit, what
    :func:`backtest_metrics` returns for that run alone.

    Raises:
        EngineError: an instance is malformed (the message names it).
        DataError: the bars are malformed.
    """
    full = as_market(df)
    first, last = _range(full, start, end)
    market = full.window(first.date() if start else None, last.date() if end else None)
    first_day = date_to_day(first.date()) if start else None
    bench, _ = _benchmark(benchmark, benchmark_symbol, first, last)
    days: dict[str, int] = {}
    read = [
        _signals(instances, market, first_day, model, days)
        for instances, model in zip(runs, models, strict=True)
    ]
    return _measure_together(market, read, bench)


def backtest_metrics_grid(
    columns: Mapping[str, Sequence[Any]],
    group: Sequence[int],
    df: pd.DataFrame | Market,
    models: Sequence[TradeModel],
    *,
    start: dt.datetime | None,
    end: dt.datetime | None,
    benchmark: pd.DataFrame | Market | None = None,
    benchmark_symbol: str | None = None,
) -> list[dict[str, Any]] | None:
    """:func:`backtest_metrics_many` of the runs one set of columns holds, read at once.

    Run ``g`` is the rows whose ``group`` is ``g`` (a whole-grid strategy's
    ``combination``), in their order, with ``models[g]``; ``columns`` holds no
    group column. The columns are read into signal arrays in one pass instead
    of one per run; each result equals :func:`backtest_metrics` of that run's
    rows alone. ``None`` when the columns need the row path (see
    :mod:`strategyq.engine.columnar`): then split them and call
    :func:`backtest_metrics_many`.
    """
    full = as_market(df)
    first, last = _range(full, start, end)
    market = full.window(first.date() if start else None, last.date() if end else None)
    first_day = date_to_day(first.date()) if start else None
    groups = np.asarray(group, dtype=np.int64)
    each = grid_column_signals(columns, groups, len(models), market, first_day)
    if each is None:
        return None
    bench, _ = _benchmark(benchmark, benchmark_symbol, first, last)
    read = [
        (columns_from(fast), model.resolved(fast.has_exits))
        for fast, model in zip(each, models, strict=True)
    ]
    return _measure_together(market, read, bench)


def _measure_together(
    market: Market, read: Sequence[tuple[SignalColumns, TradeModel]], bench: Market | None
) -> list[dict[str, Any]]:
    """Each run's metrics, the runs sharing a resolved trade model simulated together."""
    by_model: dict[TradeModel, list[tuple[int, SignalColumns]]] = {}
    for i, (cols, resolved) in enumerate(read):
        by_model.setdefault(resolved, []).append((i, cols))
    out: list[dict[str, Any]] = [{} for _ in read]
    for model, members in by_model.items():
        measured = metrics_many(market, [cols for _, cols in members], model, bench)
        for (i, _), metrics in zip(members, measured, strict=True):
            out[i] = metrics
    return out


def _signals(
    instances: Any,
    market: Market,
    first_day: int | None,
    model: TradeModel,
    days: dict[str, int],
) -> tuple[SignalColumns, TradeModel]:
    """The signal arrays of one run's instances and its resolved trade model.

    ``days`` caches parsed date strings across the runs of one market.
    """
    if isinstance(instances, Mapping):
        fast = column_signals(instances, market, first_day, days)
        if fast is not None:
            return columns_from(fast), model.resolved(fast.has_exits)
        instances = _rows(instances)
    normalized = normalized_instances(instances, market)
    return signal_columns(normalized, market, first_day), model.resolved(normalized.has_exits)


def _benchmark(
    bars: pd.DataFrame | Market | None,
    symbol: str | None,
    first: dt.datetime,
    last: dt.datetime,
) -> tuple[Market | None, str | None]:
    """The benchmark's one-ticker market within the range, and its name."""
    if bars is None:
        return None, None
    market = as_market(bars).window(first.date(), last.date())
    names = market.symbols
    name = symbol if symbol is not None else (names[0] if names else None)
    if name is None or name not in names:
        raise DataError(
            f"the benchmark {name or symbol!r} has no bars from {first.date()} to {last.date()}; "
            "import its data or pick another benchmark ticker"
        )
    if len(names) > 1:
        code = names.index(name)
        keep = np.zeros(market.rows, dtype=bool)
        keep[market.starts[code] : market.ends[code]] = True
        market = market_from_frame(
            pd.DataFrame(
                {
                    "ticker": name,
                    "date": market.day[keep].astype("datetime64[D]"),
                    "open": market.open[keep],
                    "high": market.high[keep],
                    "low": market.low[keep],
                    "close": market.close[keep],
                }
            )
        )
    return market, name


def _range(
    market: Market, start: dt.datetime | None, end: dt.datetime | None
) -> tuple[dt.datetime, dt.datetime]:
    try:
        first = parse_timestamp(start, "start") if start is not None else None
        last = parse_timestamp(end, "end") if end is not None else None
    except ValueError as exc:
        raise EngineError(str(exc)) from None
    days = market.day
    if first is None:
        first = _day_start(int(days.min())) if len(days) else dt.datetime(1970, 1, 1)
    if last is None:
        last = _day_start(int(days.max())) if len(days) else first
    if last < first:
        raise EngineError(
            f"the backtest range ends ({iso_seconds(last)}) before it starts "
            f"({iso_seconds(first)}); swap start_date and end_date"
        )
    return first, last


def _day_start(day: int) -> dt.datetime:
    return dt.datetime.fromisoformat(day_to_iso(day))
