"""The strategy policy, as one readable table.

This table is for friendly errors, not for safety: the operating-system layers
(see ``lockdown``) are the boundary. The language is open: classes,
decorators, ``getattr``, format templates, the pure-computation standard
library, pandas, numpy and the preloaded libraries all work. What is refused
here is only what the operating system would refuse anyway (files, network,
processes) or what reaches the interpreter's own machinery (frames, code
objects, the class hierarchy's ``__subclasses__``), refused early so the user
reads a fix instead of a ``PermissionError`` at run time. Every refusal comes
with what to write instead; ``checker`` reports all of them at once.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from strategyq.settings import parse_sandbox_libraries

MAX_SOURCE_CHARS = 100_000
"""Longest strategy source accepted (characters), checked before parsing."""

MAX_BRACKET_DEPTH = 60
"""Deepest bracket nesting accepted, checked on the raw text before parsing."""

MAX_TREE_DEPTH = 120
"""Deepest syntax tree accepted, checked (iteratively) right after parsing."""

MAX_FINDINGS = 50
"""Most findings reported for one strategy (the rest are counted)."""

PREDEFINED_NAMES: frozenset[str] = frozenset({"pd", "np"})

STDLIB_MODULES: frozenset[str] = frozenset(
    {
        "__future__",
        "abc",
        "array",
        "base64",
        "binascii",
        "bisect",
        "calendar",
        "cmath",
        "collections",
        "collections.abc",
        "colorsys",
        "contextlib",
        "copy",
        "csv",
        "dataclasses",
        "datetime",
        "decimal",
        "difflib",
        "enum",
        "fractions",
        "functools",
        "graphlib",
        "fnmatch",
        "hashlib",
        "heapq",
        "hmac",
        "io",
        "itertools",
        "json",
        "keyword",
        "locale",
        "logging",
        "math",
        "numbers",
        "operator",
        "pprint",
        "random",
        "re",
        "reprlib",
        "secrets",
        "statistics",
        "string",
        "struct",
        "textwrap",
        "time",
        "traceback",
        "typing",
        "typing_extensions",
        "unicodedata",
        "uuid",
        "warnings",
        "zlib",
        "zoneinfo",
    }
)
"""Standard-library modules a strategy may import: pure computation, all preloaded."""

LIBRARIES: dict[str, tuple[str, ...]] = {
    "talib": ("talib", "talib.abstract", "talib.stream"),
    "scipy": (
        "scipy",
        "scipy.stats",
        "scipy.optimize",
        "scipy.signal",
        "scipy.linalg",
        "scipy.interpolate",
        "scipy.special",
        "scipy.spatial",
        "scipy.cluster",
        "scipy.integrate",
        "scipy.ndimage",
        "scipy.fft",
        "scipy.sparse",
        "scipy.constants",
    ),
    "statsmodels": (
        "statsmodels",
        "statsmodels.api",
        "statsmodels.tsa.api",
        "statsmodels.formula.api",
        "statsmodels.tsa.stattools",
        "statsmodels.regression.linear_model",
        "statsmodels.regression.rolling",
        "statsmodels.tsa.arima.model",
        "statsmodels.tsa.holtwinters",
        "statsmodels.stats.api",
        "statsmodels.tsa.vector_ar.vecm",
        "statsmodels.tsa.regime_switching.markov_regression",
    ),
    "sklearn": (
        "sklearn",
        "sklearn.linear_model",
        "sklearn.ensemble",
        "sklearn.tree",
        "sklearn.preprocessing",
        "sklearn.model_selection",
        "sklearn.metrics",
        "sklearn.decomposition",
        "sklearn.cluster",
        "sklearn.neighbors",
        "sklearn.svm",
        "sklearn.pipeline",
        "sklearn.naive_bayes",
        "sklearn.covariance",
        "sklearn.mixture",
        "sklearn.impute",
        "sklearn.feature_selection",
        "sklearn.neural_network",
        "sklearn.discriminant_analysis",
        "sklearn.compose",
        "sklearn.calibration",
        "sklearn.inspection",
        "sklearn.kernel_ridge",
        "sklearn.gaussian_process",
        "sklearn.manifold",
        "sklearn.isotonic",
        "sklearn.dummy",
        "sklearn.multioutput",
        "sklearn.semi_supervised",
        "sklearn.cross_decomposition",
    ),
}
"""Optional libraries preloaded in the sandbox by default, with the modules that bring
in the whole public surface (their own lazy imports included). The operator trims the
list with ``STRATEGYQ_SANDBOX_LIBRARIES``."""

LIBRARY_VARIABLE = "STRATEGYQ_SANDBOX_LIBRARIES"

CORE_PACKAGES: frozenset[str] = frozenset({"pandas", "numpy"})
"""Always present, with every public submodule."""


def libraries_from_env(env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The optional libraries to preload: ``STRATEGYQ_SANDBOX_LIBRARIES`` (comma-separated,
    ``none`` for none), every one of :data:`LIBRARIES` when unset."""
    return parse_sandbox_libraries((os.environ if env is None else env).get(LIBRARY_VARIABLE))


_active: tuple[str, ...] | None = None


def set_active_libraries(names: tuple[str, ...]) -> None:
    """Which optional libraries this process preloads (the sandbox host sets it)."""
    global _active
    _active = names


def active_libraries() -> tuple[str, ...]:
    """The optional libraries strategies may import in this process's sandbox."""
    return libraries_from_env() if _active is None else _active


REFUSED_MODULES: dict[str, tuple[str, str]] = {
    **dict.fromkeys(
        (
            "os",
            "posix",
            "sys",
            "subprocess",
            "multiprocessing",
            "concurrent",
            "signal",
            "resource",
            "pty",
            "fcntl",
            "threading",
            "_thread",
            "asyncio",
            "sched",
        ),
        (
            "processes, threads and the interpreter's process state are off limits",
            "compute in the strategy function and return rows; the worker runs the process",
        ),
    ),
    **dict.fromkeys(
        (
            "socket",
            "ssl",
            "urllib",
            "http",
            "requests",
            "httpx",
            "aiohttp",
            "ftplib",
            "smtplib",
            "selectors",
            "select",
            "yfinance",
            "websocket",
            "websockets",
        ),
        (
            "the sandbox has no network",
            "the market data is in `df`; ask the operator to import other data "
            "(`strategyq data import`)",
        ),
    ),
    **dict.fromkeys(
        (
            "pathlib",
            "shutil",
            "tempfile",
            "glob",
            "fileinput",
            "mmap",
            "pickle",
            "shelve",
            "dbm",
            "sqlite3",
            "zipfile",
            "tarfile",
            "gzip",
            "bz2",
            "lzma",
            "configparser",
            "tomllib",
            "linecache",
            "filecmp",
        ),
        (
            "the sandbox has no files",
            "pass small tables in `params`, or ask for the data to be imported; "
            "return rows instead of writing files",
        ),
    ),
    **dict.fromkeys(
        (
            "ctypes",
            "gc",
            "inspect",
            "importlib",
            "builtins",
            "types",
            "marshal",
            "dis",
            "code",
            "codeop",
            "pdb",
            "bdb",
            "trace",
            "tracemalloc",
            "faulthandler",
            "weakref",
            "copyreg",
            "site",
            "sysconfig",
            "runpy",
            "pkgutil",
            "zipimport",
            "ast",
            "tokenize",
            "symtable",
            "atexit",
            "platform",
            "cffi",
            "_ctypes",
        ),
        (
            "the interpreter's internals are off limits",
            "use plain functions, classes and dataclasses (`types.SimpleNamespace` → a "
            "dataclass or a dict)",
        ),
    ),
}
"""Modules refused with (why, what to write instead)."""

MODULE_ALTERNATIVES: dict[str, str] = {
    "talib": "use the `rsi`, `bb_upper`/`bb_lower` (Bollinger) and moving-average columns "
    "already in `df`, or ask the operator to enable TA-Lib (STRATEGYQ_SANDBOX_LIBRARIES)",
    "pandas_ta": "use `talib` (TA-Lib) or the indicator columns in `df` (rsi, Bollinger)",
    "ta": "use `talib` (TA-Lib) or the indicator columns in `df` (rsi, Bollinger)",
    "finta": "use `talib` (TA-Lib) or the indicator columns in `df` (rsi, Bollinger)",
    "tulipy": "use `talib` (TA-Lib) or the indicator columns in `df` (rsi, Bollinger)",
    "scipy": "use numpy (`np.polyfit`, `np.corrcoef`, `np.percentile`), or ask the operator "
    "to enable scipy (STRATEGYQ_SANDBOX_LIBRARIES)",
    "statsmodels": "use `np.polyfit` or `np.linalg.lstsq` for a regression, or ask the "
    "operator to enable statsmodels (STRATEGYQ_SANDBOX_LIBRARIES)",
    "sklearn": "use numpy (`np.linalg.lstsq`), or ask the operator to enable scikit-learn "
    "(STRATEGYQ_SANDBOX_LIBRARIES)",
    "arch": "use `statsmodels` (e.g. `statsmodels.tsa.api`) or a rolling std in pandas",
    "numba": "write it with numpy array operations (vectorised), which run at C speed",
    "polars": "use pandas (`pd`), predefined in every strategy",
    "matplotlib": "return rows; the dashboard charts the result",
    "plotly": "return rows; the dashboard charts the result",
    "seaborn": "return rows; the dashboard charts the result",
    "torch": "use scikit-learn (`sklearn`) for models trained on `df`",
    "tensorflow": "use scikit-learn (`sklearn`) for models trained on `df`",
    "xgboost": "use `sklearn.ensemble.GradientBoostingClassifier`",
    "lightgbm": "use `sklearn.ensemble.HistGradientBoostingClassifier`",
    "backtesting": "strategyq is the backtester: return signal rows from a function of `df` "
    "(see the README's strategy contract; a class-based strategy works too)",
    "backtrader": "strategyq is the backtester: return signal rows from a function of `df`",
    "vectorbt": "strategyq is the backtester: return signal rows from a function of `df`",
    "zipline": "strategyq is the backtester: return signal rows from a function of `df`",
    "pandas_datareader": "the market data is in `df`; ask the operator to import other "
    "data (`strategyq data import`)",
    "dateutil": "use `pd.Timestamp`, `pd.DateOffset` or `datetime`",
    "pytz": "use `zoneinfo.ZoneInfo('America/New_York')` or `tz_localize('America/New_York')`",
    "simplejson": "use `json`",
    "regex": "use `re`",
}
"""The nearest available alternative for modules the sandbox does not have."""

REFUSED_BUILTINS: dict[str, tuple[str, str]] = {
    "eval": ("runs code built at run time", "write the expression as code"),
    "exec": ("runs code built at run time", "write the statements as code"),
    "compile": ("builds code objects", "write the code directly"),
    "open": (
        "opens files, and the sandbox has none",
        "pass small tables in `params`, or ask for the data to be imported",
    ),
    "__import__": ("imports modules dynamically", "use an `import` statement"),
    "input": ("reads a terminal, and the sandbox has none", "pass values in `params`"),
    "breakpoint": ("starts a debugger", "use print(); it comes back in the result's logs"),
    "help": ("is interactive-only", "read the docs outside the strategy"),
    "exit": ("stops the interpreter", "return from the strategy function"),
    "quit": ("stops the interpreter", "return from the strategy function"),
    "copyright": ("is interactive-only", "remove it"),
    "credits": ("is interactive-only", "remove it"),
    "license": ("is interactive-only", "remove it"),
}
"""Builtins absent from the sandbox: (why, what to write instead)."""

INTERNAL_DUNDERS: frozenset[str] = frozenset(
    {
        "__subclasses__",
        "__globals__",
        "__builtins__",
        "__code__",
        "__closure__",
        "__class__",
        "__bases__",
        "__base__",
        "__mro__",
        "__dict__",
        "__self__",
        "__func__",
        "__getattribute__",
        "__reduce__",
        "__reduce_ex__",
        "__getstate__",
        "__setstate__",
        "__loader__",
        "__spec__",
        "__import__",
        "__file__",
        "__path__",
        "__cached__",
        "__defaults__",
        "__kwdefaults__",
        "__wrapped__",
        "__traceback__",
        "__context__",
        "__cause__",
        "__objclass__",
        "__init_subclass__",
        "__subclasshook__",
        "__class_getitem__",
        "__set_name__",
        "__del__",
        "__delattr__",
        "__setattr__",
        "__getattr__",
        "__dir__",
        "__sizeof__",
        "__weakref__",
        "__frame__",
        "__annotate__",
    }
)
"""Special names that reach the interpreter's machinery (frames, globals, the class
hierarchy, code objects). Other special names (``__name__``, ``__init__``,
``__repr__``, ``__eq__``, ``__post_init__``, ``__len__``…) are ordinary Python."""

DEFINABLE_DUNDERS: frozenset[str] = frozenset(
    {
        "__getattr__",
        "__setattr__",
        "__delattr__",
        "__getstate__",
        "__setstate__",
        "__class_getitem__",
        "__init_subclass__",
        "__set_name__",
        "__del__",
        "__dir__",
        "__reduce__",
        "__sizeof__",
    }
)
"""Internal dunders a class may *define* (a method named so), though not read."""

INTERNAL_ATTRIBUTES: dict[str, str] = dict.fromkeys(
    (
        "gi_frame",
        "gi_code",
        "gi_yieldfrom",
        "cr_frame",
        "cr_code",
        "cr_await",
        "cr_origin",
        "ag_frame",
        "ag_code",
        "ag_await",
        "f_back",
        "f_globals",
        "f_locals",
        "f_builtins",
        "f_code",
        "f_trace",
        "f_lasti",
        "tb_frame",
        "tb_next",
        "co_code",
        "co_consts",
        "co_names",
        "func_globals",
        "func_code",
        "_getframe",
        "currentframe",
        "getframeinfo",
        "getmembers",
        "getattr_static",
    ),
    "walks interpreter frames or code objects",
)
"""Attribute names refused wherever they appear."""

MODULE_ATTRIBUTES: dict[str, str] = {
    **{
        name: REFUSED_MODULES[name][0]
        for name in (
            "os",
            "posix",
            "sys",
            "subprocess",
            "multiprocessing",
            "threading",
            "_thread",
            "asyncio",
            "socket",
            "urllib",
            "shutil",
            "pathlib",
            "tempfile",
            "pickle",
            "sqlite3",
            "ctypes",
            "gc",
            "inspect",
            "importlib",
            "builtins",
            "marshal",
            "dis",
            "pdb",
            "weakref",
            "copyreg",
            "runpy",
            "pkgutil",
            "zipimport",
            "tracemalloc",
            "faulthandler",
        )
    },
    "modules": "the interpreter's internals are off limits",
    "environ": "processes and the environment are off limits",
    "system": "processes are off limits",
    "popen": "processes are off limits",
    "ctypeslib": "the interpreter's internals are off limits",
}
"""Attributes that reach a refused module through a library (``statistics.sys``,
``np.ctypeslib``, ``pd.io.common.os``): refused when read on a module chain."""

FILE_ONLY_CALLS: dict[str, str] = {
    **dict.fromkeys(
        (
            "read_pickle",
            "read_parquet",
            "read_feather",
            "read_orc",
            "read_hdf",
            "read_sql",
            "read_sql_query",
            "read_sql_table",
            "read_excel",
            "read_stata",
            "read_sas",
            "read_spss",
            "read_clipboard",
            "read_gbq",
            "fromfile",
            "loadtxt",
            "genfromtxt",
            "fromregex",
            "memmap",
            "open_memmap",
            "HDFStore",
            "ExcelFile",
            "DataSource",
        ),
        "pass small tables in `params`, or ask for the data to be imported",
    ),
    **dict.fromkeys(
        (
            "to_pickle",
            "to_parquet",
            "to_feather",
            "to_hdf",
            "to_sql",
            "to_excel",
            "to_stata",
            "to_orc",
            "to_clipboard",
            "to_gbq",
            "tofile",
            "savez",
            "savez_compressed",
            "savetxt",
            "ExcelWriter",
        ),
        "return rows instead of writing files; the result is stored for you",
    ),
}
"""Calls whose only purpose is reading or writing files (or a database)."""

PATH_CALLS: dict[str, str] = {
    **dict.fromkeys(
        ("read_csv", "read_table", "read_json", "read_html", "read_xml", "read_fwf", "load"),
        "pass small tables in `params` (or inline text through `io.StringIO`), or ask for "
        "the data to be imported",
    ),
    **dict.fromkeys(
        (
            "to_csv",
            "to_json",
            "to_html",
            "to_xml",
            "to_latex",
            "to_markdown",
            "to_string",
            "save",
            "dump",
        ),
        "call it without a path to get the text, or return rows; the result is stored for you",
    ),
}
"""Calls that read or write files when given a path (a string), and work in memory
otherwise (``read_csv(io.StringIO(text))``, ``df.to_csv()`` → text)."""

QUERY_METHODS: frozenset[str] = frozenset({"query", "eval"})
"""``DataFrame.query``/``eval`` and ``pd.eval``: a literal expression is checked like code."""

QUERY_REFUSED_NAMES: frozenset[str] = frozenset({"pd", "np", "math", "statistics", "datetime"})
"""Names an expression string may not use: pandas resolves them from the caller's scope."""

PLOTTING_ATTRIBUTES: frozenset[str] = frozenset({"plot", "hist", "boxplot", "plotting"})
"""Plotting draws through matplotlib, which is not in the sandbox."""

ASYNC_REASON = (
    "async code needs an event loop, which needs sockets the sandbox does not have",
    "use ordinary functions",
)
