"""Market data: the columnar store, imports, synthetic universes and the strategy DataFrame.

``MarketData(root).load(symbols, start, end)`` returns the DataFrame strategies see:
one row per (ticker, session) with prices, volume and indicators (docs/data.md).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from strategyq.data.bars import Bars
    from strategyq.data.importer import ImportSummary, import_files, parse_files
    from strategyq.data.loader import LoadResult, MarketData
    from strategyq.data.sample import SAMPLE_TICKERS, load_sample, sample_path
    from strategyq.data.schema import FRAME_COLUMNS, INDICATOR_COLUMNS, is_synthetic
    from strategyq.data.store import Store, TickerEntry
    from strategyq.data.synth import SynthSummary, synthetic_bars, write_synthetic

# Each name is imported from its module on first use: a command that needs only the
# symbol lists or the schema (``strategyq submit``, ``strategyq result``) does not pay
# for pandas, which the importer and the loader bring.
_MODULE_OF = {
    "Bars": "bars",
    "ImportSummary": "importer",
    "import_files": "importer",
    "parse_files": "importer",
    "LoadResult": "loader",
    "MarketData": "loader",
    "SAMPLE_TICKERS": "sample",
    "load_sample": "sample",
    "sample_path": "sample",
    "FRAME_COLUMNS": "schema",
    "INDICATOR_COLUMNS": "schema",
    "is_synthetic": "schema",
    "Store": "store",
    "TickerEntry": "store",
    "SynthSummary": "synth",
    "synthetic_bars": "synth",
    "write_synthetic": "synth",
}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


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
