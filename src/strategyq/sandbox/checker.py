"""Check strategy source against the policy table and pick its entry function.

The source is parsed once (after size and bracket-depth caps), the tree is
checked, and the checked tree is compiled: the code that runs is exactly the
code that was checked.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from types import CodeType

from strategyq.errors import PolicyError
from strategyq.sandbox import policy

FILENAME = "<strategy>"
"""The filename compiled into strategy code; tracebacks are filtered on it."""

_DUNDER_IN_TEXT = re.compile(r"__\w*__")


@dataclass(frozen=True)
class PolicyReport:
    """What the policy check learnt about a strategy.

    Attributes:
        entry: Name of the strategy function ``run`` calls with the frame.
        takes_params: The entry is ``f(df, params)``: it is called with the
            task's parameters (a plain dict) as its second argument.
        functions: Every top-level function name, in source order.
        imports: Modules the source imports (all on the allow-list).
        tree: The checked syntax tree.
        code: ``tree`` compiled; the only code object ever executed for it.
    """

    entry: str
    takes_params: bool
    functions: tuple[str, ...]
    imports: tuple[str, ...]
    tree: ast.Module
    code: CodeType


def _line(node: ast.AST) -> int:
    return int(getattr(node, "lineno", 0) or 0)


def _fail(reason: str, node: ast.AST | None = None, line: int | None = None) -> PolicyError:
    where = line if line is not None else (_line(node) if node is not None else 0)
    return PolicyError(f"{reason} (line {where})" if where else reason)


def _bracket_depth(source: str) -> int:
    # Counted on the raw text, strings included: a cheap bound that runs before the parser.
    depth = deepest = 0
    for char in source:
        if char in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in ")]}" and depth:
            depth -= 1
    return deepest


def parse(source: str) -> ast.Module:
    """Parse with caps; every failure is a PolicyError naming what to change."""
    if not isinstance(source, str) or not source.strip():
        raise PolicyError("the strategy code is empty; send a Python function `def f(df): ...`")
    if len(source) > policy.MAX_SOURCE_CHARS:
        raise PolicyError(
            f"the strategy code is {len(source)} characters; the limit is "
            f"{policy.MAX_SOURCE_CHARS}. Shorten it."
        )
    if "\x00" in source:
        raise PolicyError("the strategy code contains a NUL character; remove it")
    if _bracket_depth(source) > policy.MAX_BRACKET_DEPTH:
        raise PolicyError(
            f"brackets are nested deeper than {policy.MAX_BRACKET_DEPTH} levels; simplify"
        )
    try:
        tree = ast.parse(source, filename=FILENAME, mode="exec")
    except SyntaxError as exc:
        raise _fail(f"syntax error: {exc.msg}", line=exc.lineno or 0) from None
    except (MemoryError, RecursionError, ValueError):
        raise PolicyError("the strategy code is too deeply nested to parse; simplify it") from None
    _check_depth(tree)
    return tree


def _check_depth(tree: ast.AST) -> None:
    stack: list[tuple[ast.AST, int]] = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > policy.MAX_TREE_DEPTH:
            raise _fail(
                f"expressions are nested deeper than {policy.MAX_TREE_DEPTH} levels; simplify",
                node,
            )
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))


def _is_dunder(name: str) -> bool:
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


def _attribute_reason(name: str) -> str | None:
    if _is_dunder(name):
        return f"special attribute '{name}' is not allowed"
    if name in policy.FORBIDDEN_ATTRIBUTES:
        return f"'{name}' is not allowed: it {policy.FORBIDDEN_ATTRIBUTES[name]}"
    for prefix, why in policy.FORBIDDEN_ATTRIBUTE_PREFIXES.items():
        if name.startswith(prefix):
            return f"'{name}' is not allowed: it {why}"
    return None


class _Checker(ast.NodeVisitor):
    def __init__(self) -> None:
        self.imports: list[str] = []

    def generic_visit(self, node: ast.AST) -> None:
        kind = type(node).__name__
        if kind in policy.REFUSED_STATEMENTS:
            raise _fail(policy.REFUSED_STATEMENTS[kind], node)
        super().generic_visit(node)

    # names -----------------------------------------------------------------
    def visit_Name(self, node: ast.Name) -> None:
        if _is_dunder(node.id):
            raise _fail(f"special name '{node.id}' is not allowed", node)
        if node.id in policy.FORBIDDEN_BUILTINS:
            why = policy.FORBIDDEN_BUILTINS[node.id]
            raise _fail(f"'{node.id}' is not allowed: it {why}", node)

    def visit_arg(self, node: ast.arg) -> None:
        self._check_binding(node.arg, node)
        self.generic_visit(node)

    def visit_keyword(self, node: ast.keyword) -> None:
        if node.arg is not None and _is_dunder(node.arg):
            raise _fail(f"special keyword '{node.arg}' is not allowed", node)
        self.generic_visit(node)

    def _check_binding(self, name: str, node: ast.AST) -> None:
        if _is_dunder(name):
            raise _fail(f"special name '{name}' is not allowed", node)
        if name in policy.FORBIDDEN_BUILTINS:
            raise _fail(f"'{name}' cannot be redefined", node)

    # attributes and strings ------------------------------------------------
    def visit_Attribute(self, node: ast.Attribute) -> None:
        # The chain's own start first: `statistics.sys.modules` is refused for `.sys`.
        self.generic_visit(node)
        reason = _attribute_reason(node.attr)
        if reason:
            raise _fail(reason, node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str | bytes):
            text = node.value if isinstance(node.value, str) else node.value.decode("latin-1")
            if _DUNDER_IN_TEXT.search(text):
                raise _fail("strings naming special attributes ('__x__') are not allowed", node)

    # imports ---------------------------------------------------------------
    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._check_module(alias.name, node)
            if alias.asname:
                self._check_binding(alias.asname, node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            raise _fail("relative imports are not allowed", node)
        self._check_module(node.module or "", node)
        for alias in node.names:
            if alias.name == "*":
                raise _fail(policy.REFUSED_STATEMENTS["ImportFrom*"], node)
            reason = _attribute_reason(alias.name)
            if reason is None and alias.name in policy.FORBIDDEN_BUILTINS:
                reason = f"'{alias.name}' is not allowed"
            if reason:
                raise _fail(reason, node)
            self._check_binding(alias.asname or alias.name, node)

    def _check_module(self, name: str, node: ast.AST) -> None:
        if name not in policy.ALLOWED_IMPORTS:
            allowed = ", ".join(sorted(policy.ALLOWED_IMPORTS))
            raise _fail(f"import of '{name}' is not allowed (allowed: {allowed})", node)
        self.imports.append(name)

    # definitions and calls -------------------------------------------------
    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        if node.decorator_list:
            raise _fail(policy.DECORATORS_REASON, node.decorator_list[0])
        self._check_binding(node.name, node)
        self.generic_visit(node)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Name) and func.id == "type" and len(node.args) != 1:
            raise _fail("type() with more than one argument (class creation) is not allowed", node)
        if isinstance(func, ast.Attribute) and func.attr in policy.DISPATCH_METHODS:
            for arg in [*node.args, *(k.value for k in node.keywords)]:
                if isinstance(arg, ast.Constant) and str(arg.value).startswith("_"):
                    raise _fail(f".{func.attr}() may not name private methods", node)
        if isinstance(func, ast.Attribute) and func.attr in policy.QUERY_METHODS:
            self._check_query(func.attr, node)
        self.generic_visit(node)

    def _check_query(self, method: str, node: ast.Call) -> None:
        first = node.args[0] if node.args else None
        if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
            raise _fail(f".{method}() needs a literal expression string", node)
        if "@" in first.value:
            raise _fail(f".{method}() expressions may not reference local variables (@)", node)
        extra = [k.arg for k in node.keywords if k.arg not in policy.QUERY_KEYWORDS]
        if len(node.args) > 1 or extra:
            raise _fail(f".{method}() accepts only the expression and inplace=", node)
        reason = expression_reason(first.value)
        if reason:
            raise _fail(f".{method}() expression {reason}", node)

    # assignment targets ----------------------------------------------------
    def visit_For(self, node: ast.For) -> None:
        self._plain_target(node.target)
        self.generic_visit(node)

    def visit_comprehension(self, node: ast.comprehension) -> None:
        self._plain_target(node.target)
        self.generic_visit(node)

    def visit_withitem(self, node: ast.withitem) -> None:
        if node.optional_vars is not None:
            self._plain_target(node.optional_vars)
        self.generic_visit(node)

    def _plain_target(self, target: ast.expr) -> None:
        for sub in ast.walk(target):
            if isinstance(sub, ast.Attribute | ast.Subscript):
                raise _fail("loop and with targets must be plain names", sub)

    def visit_MatchClass(self, node: ast.MatchClass) -> None:
        for name in node.kwd_attrs:
            reason = _attribute_reason(name)
            if reason:
                raise _fail(reason, node)
        self.generic_visit(node)

    def visit_MatchAs(self, node: ast.MatchAs) -> None:
        if node.name:
            self._check_binding(node.name, node)
        self.generic_visit(node)

    def visit_MatchStar(self, node: ast.MatchStar) -> None:
        if node.name:
            self._check_binding(node.name, node)

    def visit_MatchMapping(self, node: ast.MatchMapping) -> None:
        if node.rest:
            self._check_binding(node.rest, node)
        self.generic_visit(node)

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.name:
            self._check_binding(node.name, node)
        self.generic_visit(node)


_BACKTICKED = re.compile(r"`[^`]*`")


def expression_reason(text: str) -> str | None:
    """Why a ``query``/``eval`` string is refused, or None.

    pandas evaluates these strings itself, so they are checked like code:
    parsed (backtick-quoted column names stand in as plain names), then no
    attribute access, no special or module names, calls only of plain names.
    """
    try:
        tree = ast.parse(_BACKTICKED.sub("column", text.strip()), mode="exec")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return "is not an expression the policy can check; simplify it"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            return f"may not read attributes ('.{node.attr}'); compute it in Python first"
        if isinstance(node, ast.Name):
            if _is_dunder(node.id) or node.id.startswith("_"):
                return f"may not use the name '{node.id}'"
            # Other names are columns (``open``, ``close``): pandas looks them up in the
            # frame first, and never in the builtins.
            if node.id in policy.QUERY_REFUSED_NAMES:
                return f"may not use '{node.id}'; compute it in Python first"
        if isinstance(node, ast.Call) and not isinstance(node.func, ast.Name):
            return "may call plain functions only"
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and _DUNDER_IN_TEXT.search(node.value)
        ):
            return "may not name special attributes"
        if isinstance(node, ast.Lambda | ast.ListComp | ast.SetComp | ast.DictComp):
            return "may not define functions or comprehensions"
    return None


def pick_entry(tree: ast.Module) -> tuple[str, tuple[str, ...]]:
    """Choose the strategy function; return it and every top-level function name.

    Rules, in order: top-level ``def`` statements taking one positional
    parameter (``df``), or two when the second is named ``params``, are
    candidates; names starting with ``_`` are helpers; a function called by
    name elsewhere in the code is a helper; when several remain, those whose
    name contains ``strategy`` win. Exactly one must remain.
    """
    defs = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    names = tuple(d.name for d in defs)
    called = {
        n.func.id
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
    }
    referenced = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}

    def one_arg(fn: ast.FunctionDef) -> bool:
        a = fn.args
        positional = a.posonlyargs + a.args
        required = len(positional) - len(a.defaults)
        return (
            (required <= 1 <= len(positional) or (takes_params(fn) and required <= 2))
            and a.vararg is None
            and all(d is not None for d in a.kw_defaults)
        )

    candidates = [d.name for d in defs if one_arg(d) and not d.name.startswith("_")]
    if len(candidates) > 1:
        unused = [c for c in candidates if c not in called and c not in referenced]
        candidates = unused or candidates
    if len(candidates) > 1:
        candidates = [c for c in candidates if "strategy" in c.lower()] or candidates
    if not candidates:
        raise PolicyError(
            "no strategy function found: define one top-level function of one argument, "
            "e.g. `def my_strategy(df): ...`"
        )
    if len(candidates) > 1:
        raise PolicyError(
            f"several candidate strategy functions ({', '.join(candidates)}): keep one "
            "function of one argument, or name helpers with a leading underscore"
        )
    return candidates[0], names


def takes_params(fn: ast.FunctionDef) -> bool:
    """Whether the strategy function takes ``params`` as its second positional parameter."""
    positional = fn.args.posonlyargs + fn.args.args
    return len(positional) >= 2 and positional[1].arg == "params"


def entry_takes_params(tree: ast.Module, entry: str) -> bool:
    """Whether the entry function ``entry`` of ``tree`` is called as ``entry(df, params)``."""
    return any(
        isinstance(n, ast.FunctionDef) and n.name == entry and takes_params(n) for n in tree.body
    )


def check(source: str) -> PolicyReport:
    """Parse ``source`` once, check it, pick its entry and compile the checked tree."""
    tree = parse(source)
    checker = _Checker()
    try:
        checker.visit(tree)
    except RecursionError:
        raise PolicyError("the strategy code is too deeply nested to check; simplify it") from None
    entry, names = pick_entry(tree)
    try:
        code = compile(tree, FILENAME, "exec", dont_inherit=True)
    except SyntaxError as exc:
        raise _fail(f"syntax error: {exc.msg}", line=exc.lineno or 0) from None
    except (MemoryError, RecursionError, ValueError):
        raise PolicyError("the strategy code is too complex to compile; simplify it") from None
    return PolicyReport(
        entry=entry,
        takes_params=entry_takes_params(tree, entry),
        functions=names,
        imports=tuple(dict.fromkeys(checker.imports)),
        tree=tree,
        code=code,
    )
