"""Row checks shared by every import source (files, PostgreSQL): one set of rules, one report.

A source turns what it read into ``Columns`` (ticker codes, raw date values, numbers)
and ``check`` flags every bad row with its reason and the offending value; nothing is
stored unless every row passed, or — with ``skip_bad_rows`` — the bad rows are left
out and listed. ``to_bars`` joins the checked sources into one sorted ``Bars``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import numpy.typing as npt
import pandas as pd

from strategyq.data.bars import Bars, IntArray
from strategyq.data.schema import PRICE_COLUMNS, VALUE_COLUMNS, from_days, to_days
from strategyq.errors import ImportRejected

Problem = tuple[str, int | None, str]
"""(source, line or None, reason): a file's line counts the header as line 1."""

BoolArray = npt.NDArray[np.bool_]
ROWS_PER_REASON = 20  # rows listed per source and reason; the rest are counted

# A date as ISO 8601 writes it, optionally with a time and a UTC offset. The session
# is the calendar date as written: ``2011-12-19 00:00:00-05:00`` is the session of
# 2011-12-19 wherever the offset changes (yfinance switches -05:00/-04:00 with DST).
_ISO_DATE = re.compile(
    r"^\s*(\d{4})-(\d{2})-(\d{2})"
    r"(?:[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?"
    r"(?:\s*(?:Z|[+-]\d{2}(?::?\d{2})?))?\s*$"
)
NAT_DAY = np.iinfo(np.int32).min
"""The day number of a date that could not be read."""


@dataclass
class Columns:
    """The rows one source read, before checking.

    Attributes:
        source: The name reports use (a file path, a redacted database URL).
        names: Distinct tickers (normalised); ``codes`` index into it.
        codes: The ticker of every row.
        days: Days since 1970-01-01 of every row, ``NAT_DAY`` where unreadable.
        values: ``open``, ``high``, ``low``, ``close``, ``volume`` and optionally
            ``adj_close`` as float64, NaN where a value is missing or not a number.
        shown: The value as written in the source, for a report (row, column) -> text.
        lines: The line (files) of every row, or None where rows have no line.
        date_hint: What to say about an unreadable date.
    """

    source: str
    names: list[str]
    codes: npt.NDArray[np.int64]
    days: npt.NDArray[np.int32]
    values: dict[str, npt.NDArray[np.float64]]
    shown: Callable[[int, str], str]
    lines: npt.NDArray[np.int64] | None = None
    date_hint: str = "write it as YYYY-MM-DD"
    bad: BoolArray = field(init=False)

    def __post_init__(self) -> None:
        self.bad = np.zeros(self.codes.shape[0], dtype=bool)

    @property
    def rows(self) -> int:
        return int(self.codes.shape[0])

    def where(self, row: int) -> tuple[int | None, str]:
        """(line, prefix) that locate ``row`` in a report."""
        if self.lines is not None:
            return int(self.lines[row]), ""
        day = int(self.days[row])
        when = from_days(day).isoformat() if day != NAT_DAY else self.shown(row, "date")
        return None, f"{self.names[int(self.codes[row])]} {when}: "


def flag(
    problems: list[Problem],
    cols: Columns,
    mask: BoolArray,
    reason: Callable[[int], str],
    summary: str,
) -> None:
    """Mark the rows of ``mask`` bad; list the first few with ``reason(row)``, count the rest."""
    rows = np.flatnonzero(mask)
    if not rows.size:
        return
    cols.bad |= mask
    for row in rows[:ROWS_PER_REASON]:
        line, prefix = cols.where(int(row))
        problems.append((cols.source, line, prefix + reason(int(row))))
    if rows.size > ROWS_PER_REASON:
        problems.append(
            (cols.source, None, f"{rows.size - ROWS_PER_REASON} more row(s): {summary}")
        )


def check(cols: Columns, problems: list[Problem]) -> None:
    """Flag every row of ``cols`` that cannot be stored (sets ``cols.bad``)."""
    flag(
        problems,
        cols,
        cols.days == NAT_DAY,
        lambda r: f"date {cols.shown(r, 'date')!r} is not a date; {cols.date_hint}",
        f"date is not a date; {cols.date_hint}",
    )
    for col in PRICE_COLUMNS:
        v = cols.values[col]
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(v) | (v <= 0)
        flag(problems, cols, bad, _not_positive(cols, col), f"{col} is missing or not positive")
    volume = cols.values["volume"]
    with np.errstate(invalid="ignore"):
        bad_volume = ~np.isfinite(volume) | (volume < 0)
    flag(
        problems,
        cols,
        bad_volume,
        lambda r: f"volume is {cols.shown(r, 'volume')!r}: expected a number of at least 0",
        "volume is missing, not a number or negative",
    )
    high, low = cols.values["high"], cols.values["low"]
    with np.errstate(invalid="ignore"):
        inverted = high < low
    flag(
        problems,
        cols,
        inverted,
        lambda r: f"high {high[r]:g} is below low {low[r]:g}",
        "high is below low",
    )
    if "adj_close" in cols.values:
        adj = cols.values["adj_close"]
        with np.errstate(invalid="ignore"):
            bad_adj = ~np.isfinite(adj) | (adj <= 0)
        flag(
            problems,
            cols,
            bad_adj,
            lambda r: f"adj_close is {cols.shown(r, 'adj_close')!r}: expected a positive number",
            "adj_close is missing, not a number or not positive",
        )


def _not_positive(cols: Columns, col: str) -> Callable[[int], str]:
    def reason(row: int) -> str:
        return f"{col} is {cols.shown(row, col)!r}: expected a positive number"

    return reason


def parse_dates(values: pd.Series, date_format: str | None) -> npt.NDArray[np.int32]:  # type: ignore[type-arg]
    """Day numbers of text dates (``NAT_DAY`` where unreadable), parsing each distinct value once.

    Without ``date_format`` only ISO dates are read (``YYYY-MM-DD``, with an optional
    time and offset); any other spelling — ``2013/03/05``, ``03/01/2013`` — is refused
    the same way, since ``03/01`` could be March or January.
    """
    text = values.astype(str)
    uniques, inverse = np.unique(text.to_numpy(dtype=object).astype(str), return_inverse=True)
    days = np.array([_one_day(str(u), date_format) for u in uniques], dtype=np.int32)
    out: npt.NDArray[np.int32] = days[inverse.reshape(-1)] if len(uniques) else days
    return out


def _one_day(value: str, date_format: str | None) -> int:
    try:
        if date_format is None:
            match = _ISO_DATE.match(value)
            if not match:
                return int(NAT_DAY)
            year, month, day = (int(g) for g in match.groups())
            return to_days(datetime(year, month, day).date())
        # The session is the date as written, whatever offset follows it.
        return to_days(datetime.strptime(value.strip(), date_format).date())
    except ValueError:
        return int(NAT_DAY)


def date_hint(date_format: str | None) -> str:
    """What a report says about an unreadable date."""
    if date_format is None:
        return (
            "write dates as YYYY-MM-DD, or name the file's format with --date-format "
            "(e.g. --date-format %m/%d/%Y)"
        )
    return f"it does not match --date-format {date_format}"


def to_bars(sources: Sequence[Columns], problems: list[Problem], skip_bad_rows: bool) -> Bars:
    """Join the good rows of ``sources`` into bars sorted by (ticker, date).

    A session that appears twice — in one source or in two — is a problem reported
    on the later row, which ``skip_bad_rows`` leaves out.

    Raises:
        ImportRejected: There are problems and ``skip_bad_rows`` is false.
    """
    names = sorted({n for c in sources for n in c.names})
    tid, day, src_parts, row = _good_rows(sources, names)
    order, tid, day = _ticker_date_order(tid, day, len(names))
    row = row[order]
    if len(sources) == 1:
        src = np.zeros(tid.shape[0], dtype=np.int64)
    else:
        src = np.concatenate(src_parts)[order]
    clash = np.zeros(tid.shape[0], dtype=bool)
    clash[1:] = (tid[1:] == tid[:-1]) & (day[1:] == day[:-1])
    reported = _flag_duplicates(sources, names, tid, day, src, row, clash, problems)
    if reported > ROWS_PER_REASON:
        problems.append(("", None, f"{reported - ROWS_PER_REASON} more duplicate session(s)"))
    if problems and not skip_bad_rows:
        raise rejected(problems)
    if reported:
        keep = ~clash
        tid, day, src, row = tid[keep], day[keep], src[keep], row[keep]
    values = _gather_values(sources, tid, src, row)
    present = np.bincount(tid, minlength=len(names)).astype(np.int64)
    used = present > 0
    return Bars(
        tickers=[n for n, u in zip(names, used, strict=True) if u],
        lengths=present[used],
        dates=day.astype(np.int32, copy=False),
        values=values,
    )


def _good_rows(
    sources: Sequence[Columns], names: list[str]
) -> tuple[IntArray, npt.NDArray[np.int32], list[IntArray], IntArray]:
    """Ticker code, day, source parts and source row of every row not marked bad."""
    code_of = {n: i for i, n in enumerate(names)}
    tid_parts, day_parts, src_parts, row_parts = [], [], [], []
    for s, cols in enumerate(sources):
        remap = np.array([code_of[n] for n in cols.names], dtype=np.int64)
        good = np.flatnonzero(~cols.bad) if cols.bad.any() else None
        codes = cols.codes if good is None else cols.codes[good]
        tid_parts.append(remap[codes] if len(remap) else codes)
        day_parts.append(cols.days if good is None else cols.days[good])
        n = codes.shape[0]
        src_parts.append(np.full(n, s, dtype=np.int64))
        row_parts.append(np.arange(n) if good is None else good)
    tid = np.concatenate(tid_parts) if tid_parts else np.zeros(0, np.int64)
    day = np.concatenate(day_parts) if day_parts else np.zeros(0, np.int32)
    row = np.concatenate(row_parts) if row_parts else np.zeros(0, np.int64)
    return tid, day, src_parts, row


def _flag_duplicates(
    sources: Sequence[Columns],
    names: list[str],
    tid: IntArray,
    day: npt.NDArray[np.int32],
    src: IntArray,
    row: IntArray,
    clash: npt.NDArray[np.bool_],
    problems: list[Problem],
) -> int:
    """Mark the later row of each duplicate session bad, report the first few; return the count."""
    reported = 0
    for i in np.flatnonzero(clash):
        j = i - 1
        while clash[j]:
            j -= 1
        later, earlier = sources[int(src[i])], sources[int(src[j])]
        later.bad[int(row[i])] = True
        if reported < ROWS_PER_REASON:
            line, prefix = later.where(int(row[i]))
            at, _ = earlier.where(int(row[j]))
            if later is earlier:
                where = f"line {at}" if at is not None else "an earlier row"
                reason = f"duplicate session: the same ticker and date appear on {where}"
            else:
                where = f"{earlier.source} line {at}" if at is not None else earlier.source
                reason = (
                    f"duplicate session: {names[int(tid[i])]} "
                    f"{from_days(int(day[i])):%Y-%m-%d} is also in {where}"
                )
            problems.append((later.source, line, prefix + reason))
        reported += 1
    return reported


def _gather_values(
    sources: Sequence[Columns], tid: IntArray, src: IntArray, row: IntArray
) -> dict[str, npt.NDArray[np.float64]]:
    """Every value column of the kept rows, in their final order."""
    at_source = (
        [None] if len(sources) == 1 else [np.flatnonzero(src == s) for s in range(len(sources))]
    )

    def gather(col: str) -> npt.NDArray[np.float64]:
        out = np.empty(tid.shape[0], dtype=np.float64)
        for cols, rows_of in zip(sources, at_source, strict=True):
            picked = row if rows_of is None else row[rows_of]
            target = slice(None) if rows_of is None else rows_of
            if col == "adj_factor":
                adj = cols.values.get("adj_close")
                out[target] = adj[picked] / cols.values["close"][picked] if adj is not None else 1.0
            else:
                out[target] = cols.values[col][picked]
        return out

    # numpy's gathers release the GIL: two threads reorder two columns at a time.
    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(VALUE_COLUMNS, pool.map(gather, VALUE_COLUMNS), strict=True))


def _ticker_date_order(
    tid: npt.NDArray[np.int64], day: npt.NDArray[np.int32], tickers: int
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.int64], npt.NDArray[np.int32]]:
    """A stable order by (ticker, date), and ``tid`` and ``day`` in that order.

    Ties keep their order (source, then row).
    """
    if tickers < 2**15:
        # A stable sort on 16-bit keys is a radix sort: linear. Sources are usually in
        # date order within each ticker (by ticker, or by session as daily appends
        # leave a table), so sorting by ticker alone is often the whole job.
        order = np.argsort(tid.astype(np.int16), kind="stable")
        t, d = tid[order], day[order]
        if bool(np.all((t[1:] != t[:-1]) | (d[1:] >= d[:-1]))):
            return order, t, d
    # Days before 1970 are negative: shift them so that the key orders them first.
    key = tid << 32 | (day.astype(np.int64) + 2**31)
    full: npt.NDArray[np.intp] = np.argsort(key, kind="stable")
    return full, tid[full], day[full]


def rejected(problems: list[Problem], unusable: Problem | None = None) -> ImportRejected:
    """The error of an import refused for ``problems``.

    ``unusable``: a whole source that cannot be read as bars (its layout, not a row);
    ``--skip-bad-rows`` cannot help there, so the message says what is wrong instead.
    """
    sources = len({p[0] for p in problems if p[0]})
    if unusable is not None:
        more = len(problems) - 1
        return ImportRejected(
            f"import rejected: {unusable[0]}: {unusable[2]}"
            + (f" (and {more} more problem(s), listed)" if more > 0 else "")
            + "; nothing was stored",
            problems,
        )
    return ImportRejected(
        f"import rejected: {len(problems)} problem(s) in {max(sources, 1)} source(s); nothing "
        "was stored. Fix the rows listed and import again, or import the good rows with "
        "--skip-bad-rows",
        problems,
    )
