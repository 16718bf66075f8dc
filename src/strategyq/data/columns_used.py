"""Which indicator columns a strategy can read, found in its source before it runs.

The strategy's frame carries 27 indicator columns; most strategies read a few
of them, or none. Computing and holding only those makes a large frame a
fraction of the memory and time. A strategy can only see a column through its
frame argument, so every use of that argument is examined:

- ``df["close"]``, ``df[["ticker", "date"]]``: the names given, when each is a
  column of the frame as loaded (any other name, a typo or a column the
  strategy added, asks for every column);
- ``df.close`` (an attribute that is a frame column): that column;
- ``df.loc[rows, "close"]`` / ``df.loc[rows, ["a", "b"]]``: the names given;
- ``df.groupby(keys)["close"]`` (keys constant or themselves such uses): the names given;
- ``len(df)``, ``df.index``, ``df.shape``, ``df.empty``: no column.

Any other use — ``df[mask]`` (rows with every column), ``df.copy()``,
``df.tail(5)``, passing ``df`` to a function, a name built at run time,
``getattr``, a class-based strategy — may reach any column, and then every
indicator is computed, as before. So a strategy gets exactly the columns it can
read: the same instances, whatever it returns.
"""

from __future__ import annotations

import ast
from functools import lru_cache

from strategyq.data.schema import FRAME_COLUMNS, INDICATOR_COLUMNS

_HARMLESS_ATTRIBUTES = frozenset({"index", "shape", "empty", "size", "ndim"})
_INTROSPECTION = frozenset({"locals", "globals", "vars", "getattr", "eval", "exec", "__import__"})


@lru_cache(maxsize=256)
def indicators_used(source: str) -> tuple[str, ...] | None:
    """The indicator columns ``source``'s strategy can read, in frame order; ``None`` for all.

    ``None`` whenever the frame reaches code that could read any column (see the
    module docstring), or the source does not parse.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    names = _columns_read(tree)
    if names is None:
        return None
    return tuple(c for c in INDICATOR_COLUMNS if c in names)


def _columns_read(tree: ast.Module) -> set[str] | None:
    frames: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            return None
        # The entry is a public top-level function; its first argument is the frame.
        # A helper sees the frame only if it is passed one, which is a use of its own.
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not node.name.startswith(
            "_"
        ):
            positional = [*node.args.posonlyargs, *node.args.args]
            if positional:
                frames.add(positional[0].arg)
            elif node.args.vararg is not None:
                return None
    if not frames:
        return None
    parents: dict[ast.AST, ast.AST] = {}
    for above in ast.walk(tree):
        for child in ast.iter_child_nodes(above):
            parents[child] = above
    read: set[str] = set()
    for found in ast.walk(tree):
        if isinstance(found, ast.Name) and found.id in _INTROSPECTION:
            return None
        if isinstance(found, ast.Name) and found.id in frames and isinstance(found.ctx, ast.Load):
            got = _one_use(found, parents, frames)
            if got is None:
                return None
            read |= got
    return read


def _one_use(node: ast.Name, parents: dict[ast.AST, ast.AST], frames: set[str]) -> set[str] | None:
    """The columns one use of the frame reads, or ``None`` if it may read any."""
    parent = parents.get(node)
    if isinstance(parent, ast.Subscript) and parent.value is node:
        if isinstance(parent.ctx, ast.Store | ast.Del):
            return _names(parent.slice)  # a column the strategy writes: nothing read
        return _known(_names(parent.slice))
    if isinstance(parent, ast.Call) and node in parent.args:
        if isinstance(parent.func, ast.Name) and parent.func.id == "len":
            return set()
        return None
    if not isinstance(parent, ast.Attribute) or parent.value is not node:
        return None
    attr = parent.attr
    if attr in _HARMLESS_ATTRIBUTES:
        return set()
    if attr in FRAME_COLUMNS:
        return {attr}
    outer = parents.get(parent)
    if attr == "loc" and isinstance(outer, ast.Subscript) and outer.value is parent:
        key = outer.slice
        if isinstance(key, ast.Tuple) and len(key.elts) == 2:
            return _known(_names(key.elts[1]))
        return None
    if attr == "groupby" and isinstance(outer, ast.Call) and outer.func is parent:
        selected = parents.get(outer)
        if not (isinstance(selected, ast.Subscript) and selected.value is outer):
            return None
        columns = _known(_names(selected.slice))
        keys = [*outer.args, *(k.value for k in outer.keywords if k.arg == "by")]
        for k in keys:
            got = _group_key(k, frames)
            if columns is None or got is None:
                return None
            columns |= got
        return columns
    return None


def _known(names: set[str] | None) -> set[str] | None:
    """``names`` when each is a column of the frame as loaded, else ``None``.

    A name the frame lacks is a typo (its error then lists every column and the
    nearest one) or a column the strategy added itself: either way, all of them.
    """
    if names is None or not names <= set(FRAME_COLUMNS):
        return None
    return names


def _names(key: ast.expr) -> set[str] | None:
    """The column names of a constant key (a string, or a list or tuple of strings)."""
    if isinstance(key, ast.Constant) and isinstance(key.value, str):
        return {key.value}
    if isinstance(key, ast.List | ast.Tuple) and all(
        isinstance(e, ast.Constant) and isinstance(e.value, str) for e in key.elts
    ):
        return {
            e.value for e in key.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)
        }
    return None


def _group_key(key: ast.expr, frames: set[str]) -> set[str] | None:
    """A ``groupby`` key's column names: a constant key, or a frame use checked on its own."""
    names = _names(key)
    if names is not None:
        return names
    # df["ticker"] or df.ticker: a frame use of its own, checked when walked.
    if (
        isinstance(key, ast.Subscript | ast.Attribute)
        and isinstance(key.value, ast.Name)
        and key.value.id in frames
    ):
        return set()
    return None
