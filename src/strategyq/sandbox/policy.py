"""The strategy policy, as one readable table.

This table is for friendly errors, not for safety: the operating-system layers
(see ``lockdown``) are the boundary. Everything here is checked on the parsed
tree by ``checker``; the restricted builtins of the exec namespace come from
``SAFE_BUILTINS``. Each refusal has a short reason that ends up in the user's
``Security validation failed: ...`` message.
"""

from __future__ import annotations

MAX_SOURCE_CHARS = 100_000
"""Longest strategy source accepted (characters), checked before parsing."""

MAX_BRACKET_DEPTH = 60
"""Deepest bracket nesting accepted, checked on the raw text before parsing."""

MAX_TREE_DEPTH = 120
"""Deepest syntax tree accepted, checked (iteratively) right after parsing."""

ALLOWED_IMPORTS: frozenset[str] = frozenset({"pandas", "numpy", "math", "statistics", "datetime"})
"""Modules a strategy may import; ``pd`` and ``np`` are predefined without an import."""

PREDEFINED_NAMES: frozenset[str] = frozenset({"pd", "np"})

# Builtins that reach code, files, frames, namespaces or attributes by name.
FORBIDDEN_BUILTINS: dict[str, str] = {
    "eval": "runs arbitrary code",
    "exec": "runs arbitrary code",
    "compile": "builds code objects",
    "open": "opens files",
    "__import__": "imports modules dynamically",
    "getattr": "reads attributes by computed name",
    "setattr": "writes attributes by computed name",
    "delattr": "deletes attributes by computed name",
    "hasattr": "reads attributes by computed name",
    "vars": "exposes namespaces",
    "globals": "exposes namespaces",
    "locals": "exposes namespaces",
    "dir": "lists internals",
    "breakpoint": "starts a debugger",
    "input": "reads the terminal",
    "help": "starts the help system",
    "memoryview": "exposes raw memory",
    "object": "exposes the class hierarchy",
    "super": "exposes the class hierarchy",
    "classmethod": "defines class internals",
    "staticmethod": "defines class internals",
    "property": "defines class internals",
    "exit": "stops the interpreter",
    "quit": "stops the interpreter",
    "copyright": "is interactive-only",
    "credits": "is interactive-only",
    "license": "is interactive-only",
    "bytearray": "exposes a mutable raw buffer",
}

# Attribute (and imported) names refused wherever they appear, with the reason.
FORBIDDEN_ATTRIBUTES: dict[str, str] = {
    # frame and code walking (threat class 2)
    **dict.fromkeys(
        (
            "gi_frame",
            "gi_code",
            "gi_yieldfrom",
            "gi_running",
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
            "mro",
        ),
        "walks interpreter frames or internals",
    ),
    # format strings reaching attributes (threat class 3)
    "format": "can read attributes through '{0.attr}' fields; use an f-string instead",
    "format_map": "can read attributes through '{0.attr}' fields; use an f-string instead",
    "Formatter": "can read attributes through format fields; use an f-string instead",
    # pandas/numpy I/O and escape hatches (threat class 7)
    **dict.fromkeys(
        (
            "to_csv",
            "to_json",
            "to_html",
            "to_latex",
            "to_markdown",
            "to_string",
            "to_xml",
            "to_pickle",
            "to_parquet",
            "to_feather",
            "to_hdf",
            "to_sql",
            "to_excel",
            "to_stata",
            "to_gbq",
            "to_orc",
            "to_clipboard",
            "tofile",
            "dump",
            "dumps",
            "save",
            "savez",
            "savez_compressed",
            "savetxt",
            "load",
            "loadtxt",
            "genfromtxt",
            "fromfile",
            "fromregex",
            "memmap",
            "open_memmap",
            "DataSource",
            "HDFStore",
            "ExcelWriter",
            "ExcelFile",
        ),
        "reads or writes files",
    ),
    **dict.fromkeys(
        (
            "ctypeslib",
            "ctypes",
            "as_strided",
            "stride_tricks",
            "lib",
            "compat",
            "io",
            "core",
            "util",
            "testing",
            "f2py",
            "distutils",
            "show_config",
            "show_versions",
            "info",
            "set_option",
            "option_context",
            "options",
            "get_option",
            "reset_option",
            "describe_option",
            "plot",
            "plotting",
            "hist",
            "boxplot",
            "style",
            "Styler",
            "register_dataframe_accessor",
            "register_series_accessor",
            "register_index_accessor",
            "extensions",
        ),
        "reaches pandas/numpy internals, options, plotting or I/O",
    ),
}

# Modules that library namespaces carry as attributes (``statistics.sys``,
# ``np.ma.extras.ma.builtins``, ``np.polynomial.polyutils.operator``): a chain of
# attributes must not reach a module the strategy could not import.
MODULE_ATTRIBUTES: frozenset[str] = frozenset(
    {
        "sys", "os", "posix", "nt", "builtins", "inspect", "operator", "ctypes", "gc",
        "importlib", "subprocess", "socket", "shutil", "pathlib", "pickle", "marshal", "types",
        "threading", "_thread", "signal", "resource", "tempfile", "glob", "mmap", "platform",
        "runpy", "pkgutil", "zipimport", "linecache", "traceback", "sysconfig", "site", "urllib",
        "http", "asyncio", "multiprocessing", "concurrent", "fcntl", "pty", "code", "codeop",
        "pdb", "bdb", "dis", "copyreg", "weakref", "tokenize", "ast", "codecs", "selectors",
        "atexit", "faulthandler", "tracemalloc", "zipfile", "tarfile", "gzip", "bz2", "lzma",
        "sqlite3", "csv", "json", "uuid", "logging", "warnings", "contextvars", "abc",
    }
)  # fmt: skip

FORBIDDEN_ATTRIBUTES.update(
    dict.fromkeys(MODULE_ATTRIBUTES, "reaches a module strategies may not use")
)
FORBIDDEN_ATTRIBUTES.update(
    dict.fromkeys(
        (
            "modules",
            "environ",
            "system",
            "popen",
            "attrgetter",
            "methodcaller",
            "getmembers",
            "getattr_static",
            "currentframe",
            "getframeinfo",
        ),
        "reaches interpreter or process internals",
    )
)

FORBIDDEN_ATTRIBUTE_PREFIXES: dict[str, str] = {
    "read_": "reads files or URLs",
    "_": "is private",
}

DISPATCH_METHODS: frozenset[str] = frozenset(
    {"apply", "agg", "aggregate", "transform", "pipe", "map", "applymap", "resample", "rolling"}
)
"""pandas methods that look names up from strings: a literal private name is refused."""

QUERY_METHODS: frozenset[str] = frozenset({"query", "eval"})
"""``DataFrame.query``/``eval``: a literal expression only, no ``@`` locals, only ``inplace=``."""

QUERY_KEYWORDS: frozenset[str] = frozenset({"inplace"})

QUERY_REFUSED_NAMES: frozenset[str] = frozenset({"pd", "np", "math", "statistics", "datetime"})
"""Names an expression string may not use: pandas resolves them from the caller's scope."""

REFUSED_STATEMENTS: dict[str, str] = {
    "ClassDef": "class definitions are not allowed; use functions and dicts",
    "AsyncFunctionDef": "async functions are not allowed",
    "Await": "await is not allowed",
    "AsyncFor": "async loops are not allowed",
    "AsyncWith": "async with is not allowed",
    "Global": "global statements are not allowed; return values instead",
    "ImportFrom*": "star imports are not allowed; import names explicitly",
}

DECORATORS_REASON = "decorators are not allowed; call the function directly"

SAFE_BUILTINS: frozenset[str] = frozenset(
    {
        "abs", "all", "any", "ascii", "bin", "bool", "bytes", "callable", "chr", "complex",
        "dict", "divmod", "enumerate", "filter", "float", "format", "frozenset", "hash", "hex",
        "id", "int", "isinstance", "issubclass", "iter", "len", "list", "map", "max", "min",
        "next", "oct", "ord", "pow", "print", "range", "repr", "reversed", "round", "set",
        "slice", "sorted", "str", "sum", "tuple", "zip", "type",
        "None", "True", "False", "NotImplemented", "Ellipsis",
        "ArithmeticError", "AssertionError", "AttributeError", "Exception", "IndexError",
        "KeyError", "LookupError", "NameError", "OverflowError", "RuntimeError",
        "StopIteration", "TypeError", "ValueError", "ZeroDivisionError",
    }
)  # fmt: skip
"""Builtins present in the exec namespace (plus a guarded ``__import__``)."""
