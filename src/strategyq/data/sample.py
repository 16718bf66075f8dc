"""The real sample data: Quandl WIKI daily bars shipped by the ``bokeh-sampledata`` package.

AAPL, GOOG, IBM and MSFT from 2000-03-01 to 2013-03-01 (GOOG from its 2004 listing) and
FB from 2012 to 2013, public domain. Prices are unadjusted; the file's ``Adj Close``
becomes ``adj_factor`` so loads with ``adjusted=True`` remove splits and dividends.
"""

from __future__ import annotations

from pathlib import Path

from strategyq.data.importer import ImportSummary, import_files
from strategyq.errors import DataError

SAMPLE_TICKERS = ("AAPL", "FB", "GOOG", "IBM", "MSFT")


def sample_path() -> Path:
    """The installed ``stocks.csv.gz`` (long format with an ``Adj Close`` column).

    Raises:
        DataError: ``bokeh-sampledata`` is not installed.
    """
    try:
        from bokeh_sampledata import package_path
    except ImportError:
        raise DataError(
            "the sample data needs the bokeh-sampledata package; pip install bokeh-sampledata"
        ) from None
    path = Path(package_path("stocks.csv.gz"))
    if not path.is_file():
        raise DataError(f"{path} is missing; reinstall bokeh-sampledata")
    return path


def load_sample(root: Path) -> ImportSummary:
    """Import the sample bars into the store at ``root`` (re-running replaces them)."""
    return import_files(root, [sample_path()])
