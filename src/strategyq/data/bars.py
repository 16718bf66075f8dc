"""``Bars``: daily bars of several tickers as flat column arrays, the currency of the data layer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from strategyq.data.schema import VALUE_COLUMNS

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
DayArray = npt.NDArray[np.int32]


@dataclass(frozen=True)
class Bars:
    """Bars of ``tickers`` (sorted, unique) stored one ticker after another, each sorted by date.

    ``lengths[i]`` rows belong to ``tickers[i]``; ``dates`` are days since 1970-01-01;
    ``values`` holds one float64 array per name in ``VALUE_COLUMNS``.
    """

    tickers: list[str]
    lengths: IntArray
    dates: DayArray
    values: dict[str, FloatArray]

    @property
    def rows(self) -> int:
        return int(self.dates.shape[0])

    @property
    def offsets(self) -> IntArray:
        """Start row of each ticker (length ``len(tickers) + 1``, last entry = ``rows``)."""
        out = np.zeros(len(self.tickers) + 1, dtype=np.int64)
        np.cumsum(self.lengths, out=out[1:])
        return out

    def ticker_codes(self) -> IntArray:
        """The index into ``tickers`` of every row."""
        return np.repeat(np.arange(len(self.tickers), dtype=np.int64), self.lengths)

    def take(self, index: IntArray, lengths: IntArray) -> Bars:
        """The rows at ``index`` (grouped by ticker, ``lengths`` rows each, same tickers)."""
        return Bars(
            tickers=self.tickers,
            lengths=lengths,
            dates=self.dates[index],
            values={name: self.values[name][index] for name in VALUE_COLUMNS},
        )


def empty_bars() -> Bars:
    """Bars with no tickers and no rows."""
    return Bars(
        tickers=[],
        lengths=np.zeros(0, dtype=np.int64),
        dates=np.zeros(0, dtype=np.int32),
        values={name: np.zeros(0, dtype=np.float64) for name in VALUE_COLUMNS},
    )


def concat_bars(parts: Sequence[Bars]) -> Bars:
    """Join bars of disjoint ticker sets and reorder them by ticker."""
    parts = [p for p in parts if p.tickers]
    if not parts:
        return empty_bars()
    if len(parts) == 1:
        return parts[0]
    names = [t for p in parts for t in p.tickers]
    order = sorted(range(len(names)), key=names.__getitem__)
    starts = [p.offsets[:-1] for p in parts]
    slices: list[tuple[int, int, int]] = []  # (part, start, length) per ticker, flattened order
    for part_no, p in enumerate(parts):
        for i in range(len(p.tickers)):
            slices.append((part_no, int(starts[part_no][i]), int(p.lengths[i])))
    chosen = [slices[i] for i in order]

    def join(get: object) -> npt.NDArray[np.generic]:
        arrays = [getattr_column(parts[p], get)[s : s + n] for p, s, n in chosen]
        return np.concatenate(arrays)

    return Bars(
        tickers=[names[i] for i in order],
        lengths=np.array([n for _, _, n in chosen], dtype=np.int64),
        dates=join("date").astype(np.int32, copy=False),
        values={name: join(name).astype(np.float64, copy=False) for name in VALUE_COLUMNS},
    )


def getattr_column(bars: Bars, name: object) -> npt.NDArray[np.generic]:
    """A column of ``bars`` by name (``date`` or a value column)."""
    if name == "date":
        return bars.dates
    return bars.values[str(name)]
