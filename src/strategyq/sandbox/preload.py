"""Import, before lock-down, every module a strategy's pandas/numpy/datetime calls may need.

A locked-down child can read no file but the libraries' own data, and finds no
module by path, so a module first imported after lock-down cannot be loaded.
pandas and numpy import many of their parts lazily (``df.pivot`` →
``pandas.core.reshape.pivot``, ``np.fft`` on first use), and the C parts of
the standard library do too (``datetime.strptime`` → ``_strptime``,
``Timestamp.strftime`` → ``time``).
So the forking parent imports every submodule of pandas and numpy (a walk of
the installed packages: whatever version is installed, nothing is missed),
plus the standard-library modules that C code or those packages import
inside functions, listed in :data:`STDLIB_LAZY` — found by scanning the
installed sources for imports inside function bodies (see
``tests/unit/test_sandbox_preload.py``, which fails when a new version adds
one that is missing here).

The libraries' bundled data files (scikit-learn's ``load_iris()``,
statsmodels' ``datasets.macrodata.load_pandas()``, SciPy's Sobol tables, the
time-zone database) are read after lock-down, when a strategy asks: the
package directories of the preloaded libraries and the time-zone directories
(:func:`readable_directories`) are the only places Landlock lets a child read
a file, and only read (:func:`strategyq.sandbox.landlock.grant_reading`).

After lock-down :func:`refuse_further_imports` puts a finder first on
``sys.meta_path`` that raises :class:`NotProvided` (a ModuleNotFoundError,
so a library's ``except ImportError`` fallback still works) naming the
module, instead of letting the path finder touch the filesystem.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.abc
import importlib.machinery
import io
import os
import pkgutil
import sys
import warnings
from collections.abc import Sequence
from types import ModuleType

WALKED_PACKAGES = ("numpy", "pandas", "encodings")
"""Packages imported in full (every submodule but tests and build tooling)."""

SKIPPED_PARTS = (
    ".tests",
    ".conftest",
    "._pyinstaller",
    ".f2py",
    ".distutils",
    ".mypy_plugin",
    "._core.cversions",
    # Test helpers: the policy refuses `testing`, and they pull in unittest and pytest.
    "numpy.testing",
    "pandas.testing",
    "pandas._testing",
    "numpy._pytesttester",
    # pandas' test decorators import pytest at the top: where the test runner is
    # installed the fork server would otherwise hold all of pytest, which production
    # does not have, and every child's fork and exit would pay for its pages.
    "pandas.util._test_decorators",
    "pandas.util._tester",
    # Optional extras whose dependencies (numba, jinja2, matplotlib) are not installed;
    # importing them just fails, so skip the attempt.
    "._numba",
    ".formats.style",
    ".plotting._matplotlib",
    # Libraries' build and table-generation scripts, and array-API shims for GPU
    # libraries that are not installed.
    "._build_utils",
    "joblib.test",
    "._precompute",
    ".array_api_compat.cupy",
    ".array_api_compat.torch",
    ".array_api_compat.dask",
    ".libqsturng.make_tbls",
    # Platform codecs that do not exist on Linux.
    "encodings.mbcs",
    "encodings.oem",
    "encodings.cp65001",
)

STDLIB_LAZY: tuple[str, ...] = (
    # Imported by C code on first use.
    "_strptime",  # datetime.strptime, time.strptime, pandas' strptime fallback
    "time",  # datetime.date.today(), Timestamp.strftime
    "calendar",  # _strptime, email-style dates
    "locale",  # _strptime, str formatting with 'n'
    "zoneinfo",  # datetime tz names, pandas tz handling
    "unicodedata",  # str methods on some code points, pandas str accessors
    # Imported inside functions of pandas, numpy, datetime or statistics.
    "bisect",
    "bz2",
    "contextlib",
    "copy",
    "csv",
    "dataclasses",
    "decimal",
    "difflib",
    "fractions",
    "functools",
    "gzip",
    "heapq",
    "inspect",
    "itertools",
    "json",
    "lzma",
    "math",
    "mmap",
    "numbers",
    "operator",
    "pickle",
    "platform",
    "pprint",
    "random",
    "re",
    "shutil",
    "statistics",
    "string",
    "struct",
    "tarfile",
    "textwrap",
    "threading",
    "tokenize",
    "traceback",
    "types",
    "typing",
    "uuid",
    "warnings",
    "weakref",
    "zipfile",
    "zlib",
)
"""Standard-library modules imported lazily by C code or inside library functions."""

NOT_PROVIDED: dict[str, str] = {
    "sqlite3": "databases (read_sql) are I/O",
    "adbc_driver_manager": "database drivers (read_sql) are I/O",
    "adbc_driver_postgresql": "database drivers (read_sql) are I/O",
    "psycopg": "database drivers (read_sql) are I/O",
    "sqlalchemy": "database drivers (read_sql) are I/O",
    "urllib.request": "URLs are network I/O",
    "urllib.error": "URLs are network I/O",
    "xml.dom.minidom": "XML readers and writers are I/O",
    "xml.etree.ElementTree": "XML readers and writers are I/O",
    "doctest": "test tooling",
    "optparse": "command-line tooling",
    "curses": "terminal I/O",
    "ctypes.wintypes": "Windows only",
    "winreg": "Windows only",
    "pyarrow.parquet": "Parquet files are I/O",
    "yaml": "configuration files are I/O (and not a dependency)",
    # Installed only with the benchmark extra (backtesting.py and vectorbt, the sweep
    # benchmark's yardsticks): not strategy dependencies, and plotting is I/O.
    # The trusted engine compiles its sweep loop with numba; a strategy's compiled code
    # would be machine code the policy never sees.
    "numba": "a compiler of machine code the policy cannot check (the engine's own)",
    "numba.typed": "a compiler of machine code the policy cannot check (the engine's own)",
    "matplotlib": "plotting writes images: I/O (only the benchmark extra installs it)",
    "matplotlib.pyplot": "plotting writes images: I/O (only the benchmark extra installs it)",
    "IPython": "interactive shells are not strategies (only the benchmark extra installs it)",
    "IPython.core.formatters": "interactive shells are not strategies (benchmark extra only)",
    "IPython.core.interactiveshell": "interactive shells are not strategies (benchmark extra only)",
    "traitlets.config": "IPython's configuration (only the benchmark extra installs it)",
    "traitlets.traitlets": "IPython's configuration (only the benchmark extra installs it)",
}
"""Modules pandas/numpy import inside functions that are deliberately not preloaded, and why."""

THIRD_PARTY_LAZY: tuple[str, ...] = ("pyarrow", "pyarrow.compute", "dateutil", "dateutil.parser")
"""Installed libraries pandas reaches for inside functions (string dtype, parsing)."""


LIBRARY_DEPENDENCIES: dict[str, tuple[str, ...]] = {
    "sklearn": ("joblib", "threadpoolctl", "narwhals"),
    "statsmodels": ("patsy",),
}
"""Packages an optional library imports inside its functions (walked with it)."""


def _skipped(name: str) -> bool:
    return any(part in name for part in SKIPPED_PARTS)


def _import(name: str, failed: list[str]) -> ModuleType | None:
    try:
        return importlib.import_module(name)
    except Exception:  # an optional extra's missing dependency: not provided, said so later
        failed.append(name)
        return None


def walk(package: str, failed: list[str]) -> int:
    """Import ``package`` and every submodule of it; returns how many were walked.

    Not ``pkgutil.walk_packages``: it imports every subpackage to look inside,
    skipped ones too (``numpy.distutils`` pulls in setuptools, a tests package
    pytest), which costs more than all the rest.
    """
    root = _import(package, failed)
    if root is None or not hasattr(root, "__path__"):
        return 0
    count = 0
    pending = [(list(root.__path__), package)]
    while pending:
        path, prefix = pending.pop()
        for info in pkgutil.iter_modules(path, prefix + "."):
            if _skipped(info.name):
                continue
            module = _import(info.name, failed)
            count += 1
            if info.ispkg and module is not None and hasattr(module, "__path__"):
                pending.append((list(module.__path__), info.name))
    return count


_ZONES: list[object] = []
"""Every IANA time zone, loaded before lock-down: ``zoneinfo.ZoneInfo`` keeps loaded
zones in its cache for as long as they are referenced, so ``ZoneInfo(name)``,
``tz_localize(name)`` and ``Timestamp(..., tz=name)`` find them without a file."""


def load_time_zones() -> int:
    """Load every IANA zone the system (or the tzdata package) has; returns how many."""
    import zoneinfo
    import zoneinfo._zoneinfo

    # Both classes: pandas builds its "twin" zones with the pure-Python one, whose
    # cache is its own.
    classes = {zoneinfo.ZoneInfo, zoneinfo._zoneinfo.ZoneInfo}
    if not _ZONES:
        for key in sorted(zoneinfo.available_timezones()):
            for cls in classes:
                try:
                    _ZONES.append(cls(key))
                except (OSError, ValueError):  # a key listed without a readable file
                    continue
    return len(_ZONES)


def preload(extra: Sequence[str] = (), libraries: Sequence[str] | None = None) -> list[str]:
    """Import everything above, the optional ``libraries`` (every public submodule; the
    operator's list when None) and ``extra``; load every time zone. Returns the names
    that could not be imported."""
    from strategyq.sandbox import landlock, policy

    failed: list[str] = []
    chosen = policy.active_libraries() if libraries is None else tuple(libraries)
    policy.set_active_libraries(tuple(chosen))
    # Deprecated modules (numpy.matlib) warn on import; a caller's "error" filter must
    # not keep them out. Some libraries print while importing: that goes nowhere.
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        for name in (*STDLIB_LAZY, *sorted(policy.STDLIB_MODULES), *THIRD_PARTY_LAZY, *extra):
            _import(name, failed)
        for package in (*WALKED_PACKAGES, *chosen):
            walk(package, failed)
            for dependency in LIBRARY_DEPENDENCIES.get(package, ()):
                walk(dependency, failed)
    load_time_zones()
    _fill_library_caches(chosen)
    landlock.grant_reading(readable_directories(chosen))
    return failed


DATA_PACKAGES: tuple[str, ...] = ("tzdata",)
"""Installed packages that are nothing but data the standard library reads (``zoneinfo``
falls back to the ``tzdata`` package where the system has no time-zone database)."""


def readable_directories(libraries: Sequence[str]) -> list[str]:
    """Where a child may read files: the package directory of each preloaded optional
    library in ``libraries`` and of :data:`DATA_PACKAGES`, and the system's time-zone
    directories (``zoneinfo.TZPATH``). Never site-packages as a whole, the home or
    working directory, the data store, or pandas' and numpy's own directories (nothing
    there is read at run time)."""
    import zoneinfo

    directories: list[str] = []
    for name in (*libraries, *DATA_PACKAGES):
        module = sys.modules.get(name)
        if module is None and name in DATA_PACKAGES:
            with contextlib.suppress(ImportError):
                module = importlib.import_module(name)
        # A regular package's directory only (its name is the package's): never a
        # namespace package's several roots, nor a module file's folder (site-packages).
        file = getattr(module, "__file__", None)
        if not isinstance(file, str) or os.path.basename(file) != "__init__.py":
            continue
        directory = os.path.dirname(os.path.realpath(file))
        if os.path.basename(directory) == name.rpartition(".")[2]:
            directories.append(directory)
    directories.extend(path for path in zoneinfo.TZPATH if os.path.isdir(path))
    return directories


def _fill_library_caches(libraries: Sequence[str]) -> None:
    """Ask, before lock-down, what libraries otherwise read from files on first use and
    then cache: scikit-learn's thread count (joblib reads the cgroup CPU quota). The
    child's environment is empty, so it is asked here without ``OMP_NUM_THREADS``
    (which would skip the cache) too."""
    if "sklearn" in libraries:
        saved = os.environ.pop("OMP_NUM_THREADS", None)
        try:
            from sklearn.utils._openmp_helpers import _openmp_effective_n_threads

            for physical in (True, False):
                _openmp_effective_n_threads(only_physical_cores=physical)
        except Exception:  # a version without this helper: nothing to fill
            pass
        finally:
            if saved is not None:
                os.environ["OMP_NUM_THREADS"] = saved


class NotProvided(ModuleNotFoundError):
    """Raised in a locked-down child for an import of a module that was not preloaded."""


class _NoFurtherImports(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        raise NotProvided(f"the sandbox does not provide module '{fullname}'", name=fullname)


def refuse_further_imports() -> None:
    """Make any import of a module not yet loaded fail at once, naming it (child only)."""
    sys.meta_path.insert(0, _NoFurtherImports())
