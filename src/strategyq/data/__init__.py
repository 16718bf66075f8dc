"""Market data: the columnar store, imports, synthetic universes and the strategy DataFrame.

``MarketData(root).load(symbols, start, end)`` returns the DataFrame strategies see:
one row per (ticker, session) with prices, volume and indicators (docs/data.md).
"""

from __future__ import annotations

from strategyq.data.bars import Bars
from strategyq.data.importer import ImportSummary, import_files, parse_files
from strategyq.data.loader import LoadResult, MarketData
from strategyq.data.sample import SAMPLE_TICKERS, load_sample, sample_path
from strategyq.data.schema import FRAME_COLUMNS, INDICATOR_COLUMNS, is_synthetic
from strategyq.data.store import Store, TickerEntry
from strategyq.data.synth import SynthSummary, synthetic_bars, write_synthetic

__all__ = [
    "FRAME_COLUMNS",
    "INDICATOR_COLUMNS",
    "SAMPLE_TICKERS",
    "Bars",
    "ImportSummary",
    "LoadResult",
    "MarketData",
    "Store",
    "SynthSummary",
    "TickerEntry",
    "import_files",
    "is_synthetic",
    "load_sample",
    "parse_files",
    "sample_path",
    "synthetic_bars",
    "write_synthetic",
]
