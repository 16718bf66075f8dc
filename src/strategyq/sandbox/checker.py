"""Check strategy source against the policy table and pick its entry function.

The source is parsed once (after size and bracket-depth caps), the tree is
checked, and the checked tree is compiled: the code that runs is exactly the
code that was checked. Every finding is collected, so one answer lists all of
them, each with its line and what to write instead.
"""

from __future__ import annotations

import ast
import difflib
import re
from dataclasses import dataclass
from types import CodeType

from strategyq.errors import ModuleUnavailable, PolicyError, StrategySyntaxError
from strategyq.sandbox import policy

FILENAME = "<strategy>"
"""The filename compiled into strategy code; tracebacks are filtered on it."""

_DUNDER_IN_TEXT = re.compile(r"__\w+__")


@dataclass(frozen=True)
class Finding:
    """One thing the policy refuses, where it is and what to write instead.

    ``kind`` is the error type a run would end with: ``syntax``, ``policy`` or
    ``module_unavailable``.
    """

    kind: str
    line: int
    message: str
    fix: str = ""
    column: int = 0

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{where}{self.message}" + (f" — {self.fix}" if self.fix else "")

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "line": self.line,
            "column": self.column,
            "message": self.message,
            "fix": self.fix,
        }


@dataclass(frozen=True)
class PolicyReport:
    """What the policy check learnt about a strategy.

    Attributes:
        entry: Name of the strategy function ``run`` calls with the frame.
        takes_params: The entry is ``f(df, params)``: it is called with the
            task's parameters (a plain dict) as its second argument.
        functions: Every top-level function name, in source order.
        imports: Modules the source imports (all available in the sandbox).
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


def syntax_message(source: str, exc: SyntaxError) -> str:
    """A syntax error as Python prints it: line, the line's text and a caret."""
    line = exc.lineno or 0
    text = exc.text
    if text is None and 0 < line <= len(source.splitlines()):
        text = source.splitlines()[line - 1]
    message = f"syntax error on line {line}: {exc.msg}" if line else f"syntax error: {exc.msg}"
    if text:
        stripped = text.rstrip("\n")
        indent = len(stripped) - len(stripped.lstrip())
        caret = max(0, (exc.offset or 1) - 1 - indent)
        message += f"\n    {stripped.strip()}\n    {' ' * caret}^"
    return message


def parse(source: str) -> ast.Module:
    """Parse with caps; a syntax error is a StrategySyntaxError, a cap a PolicyError."""
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
        raise StrategySyntaxError(syntax_message(source, exc), line=exc.lineno or 0) from None
    except UnicodeError:
        raise StrategySyntaxError(
            "the strategy code contains characters that are not valid Unicode (lone "
            "surrogates); remove them"
        ) from None
    except (MemoryError, RecursionError, ValueError):
        raise PolicyError("the strategy code is too deeply nested to parse; simplify it") from None
    _check_depth(tree)
    return tree


def _check_depth(tree: ast.AST) -> None:
    stack: list[tuple[ast.AST, int]] = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > policy.MAX_TREE_DEPTH:
            raise PolicyError(
                f"expressions are nested deeper than {policy.MAX_TREE_DEPTH} levels; simplify "
                f"(line {_line(node)})"
            )
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))


def _internal(name: str) -> bool:
    return name in policy.INTERNAL_DUNDERS


def available_modules() -> frozenset[str]:
    """Top-level names of every module a strategy may import here."""
    return policy.STDLIB_MODULES | policy.CORE_PACKAGES | frozenset(policy.active_libraries())


def module_finding(name: str, line: int) -> Finding | None:
    """Why ``import name`` is refused or unavailable, with the nearest alternative; or None."""
    parts = name.split(".")
    root = parts[0]
    for size in range(len(parts), 0, -1):
        refused = policy.REFUSED_MODULES.get(".".join(parts[:size]))
        if refused is not None:
            why, fix = refused
            return Finding("policy", line, f"module '{name}' is refused: {why}", fix)
    if root in policy.CORE_PACKAGES or root in policy.active_libraries():
        internal = [p for p in parts[1:] if p in policy.MODULE_ATTRIBUTES]
        if internal:
            return Finding(
                "policy",
                line,
                f"module '{name}' is refused: {policy.MODULE_ATTRIBUTES[internal[0]]}",
                f"import the public module instead (e.g. `import {root}`)",
            )
        private = [p for p in parts[1:] if p.startswith("_")]
        if private:
            return Finding(
                "policy",
                line,
                f"module '{name}' is a private part of {root}",
                f"import the public module instead (e.g. `import {root}`)",
            )
        return None
    if name in policy.STDLIB_MODULES or root in policy.STDLIB_MODULES:
        return None
    fix = policy.MODULE_ALTERNATIVES.get(root, "")
    if not fix:
        close = difflib.get_close_matches(root, sorted(available_modules()), n=1, cutoff=0.6)
        fix = (
            f"did you mean `{close[0]}`?"
            if close
            else "the sandbox has pandas, numpy, the pure-computation standard library"
            + (f" and {', '.join(policy.active_libraries())}" if policy.active_libraries() else "")
        )
    return Finding("module_unavailable", line, f"the sandbox does not provide module '{name}'", fix)


def _string_arg(node: ast.Call, keywords: tuple[str, ...]) -> bool:
    first = node.args[0] if node.args else None
    if first is None:
        first = next((k.value for k in node.keywords if k.arg in keywords), None)
    return isinstance(first, ast.JoinedStr) or (
        isinstance(first, ast.Constant) and isinstance(first.value, str | bytes)
    )


_PATH_KEYWORDS = ("filepath_or_buffer", "path_or_buf", "buf", "path", "file", "fname", "io")


def _module_chain(node: ast.expr, imported: dict[str, str]) -> bool:
    """Whether ``node`` is a name bound to a module (``pd``, ``np``, an import) or an
    attribute chain starting at one."""
    while isinstance(node, ast.Attribute):
        node = node.value
    return isinstance(node, ast.Name) and (
        node.id in policy.PREDEFINED_NAMES or node.id in imported
    )


def _is_main_guard(test: ast.expr) -> bool:
    return (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
        and len(test.ops) == 1
        and isinstance(test.ops[0], ast.Eq)
        and isinstance(test.comparators[0], ast.Constant)
        and test.comparators[0].value == "__main__"
    )


class _Checker(ast.NodeVisitor):
    def __init__(self) -> None:
        self.imports: list[str] = []
        self.bound_modules: dict[str, str] = {}
        self.findings: list[Finding] = []

    def add(self, node: ast.AST, message: str, fix: str = "", kind: str = "policy") -> None:
        self.findings.append(
            Finding(kind, _line(node), message, fix, int(getattr(node, "col_offset", 0) or 0))
        )

    def visit_If(self, node: ast.If) -> None:
        # `if __name__ == "__main__":` never runs in the sandbox (the strategy's module
        # is not the main one): what a user tries locally there (a CSV file) is no finding.
        if _is_main_guard(node.test):
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    # names -----------------------------------------------------------------
    def visit_Name(self, node: ast.Name) -> None:
        if _internal(node.id):
            self.add(node, f"'{node.id}' reaches the interpreter's internals", "remove it")
        elif node.id in policy.REFUSED_BUILTINS:
            why, fix = policy.REFUSED_BUILTINS[node.id]
            self.add(node, f"'{node.id}' is not available: it {why}", fix)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        self.generic_visit(node)
        name = node.attr
        if _internal(name):
            self.add(
                node,
                f"'.{name}' reaches the interpreter's internals",
                "use the object's own methods; `type(x).__name__` names a class",
            )
        elif name in policy.INTERNAL_ATTRIBUTES:
            self.add(node, f"'.{name}' {policy.INTERNAL_ATTRIBUTES[name]}", "remove it")
        elif name in policy.MODULE_ATTRIBUTES and _module_chain(node.value, self.bound_modules):
            self.add(
                node,
                f"'.{name}' reaches a module that is off limits: {policy.MODULE_ATTRIBUTES[name]}",
                "remove it",
            )
        elif name in policy.PLOTTING_ATTRIBUTES and not isinstance(node.ctx, ast.Store):
            self.add(
                node,
                f"'.{name}' draws a chart with matplotlib, which the sandbox does not have",
                "return rows; the dashboard charts the result",
            )

    def visit_MatchClass(self, node: ast.MatchClass) -> None:
        for name in node.kwd_attrs:
            if _internal(name):
                self.add(node, f"'{name}' reaches the interpreter's internals", "remove it")
        self.generic_visit(node)

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str | bytes):
            text = node.value if isinstance(node.value, str) else node.value.decode("latin-1")
            internal = [m for m in _DUNDER_IN_TEXT.findall(text) if _internal(m)]
            if internal:
                self.add(
                    node,
                    f"the string names '{internal[0]}', which reaches the interpreter's internals",
                    "name ordinary attributes only",
                )

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        # A class may define any special method (`__getattr__`, `__setstate__`…);
        # reading internals is what is refused.
        if _internal(node.name) and node.name not in policy.DEFINABLE_DUNDERS:
            self.add(node, f"'{node.name}' reaches the interpreter's internals", "rename it")
        self.generic_visit(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self.add(node, *policy.ASYNC_REASON)

    def visit_Await(self, node: ast.Await) -> None:
        self.add(node, *policy.ASYNC_REASON)
        self.generic_visit(node)

    def visit_AsyncFor(self, node: ast.AsyncFor) -> None:
        self.add(node, *policy.ASYNC_REASON)
        self.generic_visit(node)

    def visit_AsyncWith(self, node: ast.AsyncWith) -> None:
        self.add(node, *policy.ASYNC_REASON)
        self.generic_visit(node)

    # imports ---------------------------------------------------------------
    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if self._check_module(alias.name, node):
                self.bound_modules[alias.asname or alias.name.split(".")[0]] = alias.name

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            self.add(node, "relative imports have no package to import from", "import by name")
            return
        module = node.module or ""
        if not self._check_module(module, node):
            return
        for alias in node.names:
            if alias.name == "*":
                if module == "__future__":
                    continue
                self.add(
                    node,
                    "star imports hide where names come from",
                    f"import the names you use: `from {module} import a, b`",
                )
                continue
            full = f"{module}.{alias.name}"
            if full in policy.REFUSED_MODULES or (
                alias.name in policy.MODULE_ATTRIBUTES and module.split(".")[0] != "__future__"
            ):
                finding = module_finding(full, _line(node))
                if finding is not None and finding.kind == "policy":
                    self.findings.append(finding)
                    continue
            if _internal(alias.name) or alias.name in policy.INTERNAL_ATTRIBUTES:
                self.add(node, f"'{alias.name}' reaches the interpreter's internals", "remove it")
            elif alias.name in policy.REFUSED_BUILTINS:
                why, fix = policy.REFUSED_BUILTINS[alias.name]
                self.add(node, f"'{alias.name}' is not available: it {why}", fix)
            elif alias.name in policy.FILE_ONLY_CALLS:
                self.add(
                    node,
                    f"'{alias.name}' reads or writes files, and the sandbox has none",
                    policy.FILE_ONLY_CALLS[alias.name],
                )

    def _check_module(self, name: str, node: ast.AST) -> bool:
        finding = module_finding(name, _line(node))
        if finding is not None:
            self.findings.append(finding)
            return False
        self.imports.append(name)
        return True

    # calls -----------------------------------------------------------------
    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name = (
            func.attr
            if isinstance(func, ast.Attribute)
            else func.id
            if isinstance(func, ast.Name)
            else ""
        )
        if name in policy.FILE_ONLY_CALLS:
            self.add(
                node,
                f"'{name}' reads or writes files, and the sandbox has none",
                policy.FILE_ONLY_CALLS[name],
            )
        elif name in policy.PATH_CALLS and _string_arg(node, _PATH_KEYWORDS):
            verb = "reads" if name.startswith(("read", "load")) else "writes"
            self.add(
                node,
                f"'{name}' with a path {verb} a file, and the sandbox has none",
                policy.PATH_CALLS[name],
            )
        elif name in policy.QUERY_METHODS and isinstance(func, ast.Attribute):
            first = node.args[0] if node.args else None
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                reason = expression_reason(first.value)
                if reason:
                    self.add(node, f".{name}() expression {reason}", "compute it in Python first")
        elif name == "vars" and isinstance(func, ast.Name) and not node.args:
            self.add(
                node,
                "vars() without an argument exposes the frame's namespace",
                "name the variables you need; vars(obj) works on your own objects",
            )
        self.generic_visit(node)


_BACKTICKED = re.compile(r"`[^`]*`")


def expression_reason(text: str) -> str | None:
    """Why a ``query``/``eval`` string is refused, or None.

    pandas evaluates these strings itself, resolving names (``@local`` ones too)
    from the caller's frame, so they are checked like code: parsed (backtick-quoted
    column names stand in as plain names), then no attribute access, no special or
    module names, calls only of plain names.
    """
    try:
        tree = ast.parse(_BACKTICKED.sub("column", text.strip()).replace("@", ""), mode="exec")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return "is not an expression the policy can check; simplify it"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            return f"may not read attributes ('.{node.attr}')"
        if isinstance(node, ast.Name):
            if node.id.startswith("__"):
                return f"may not use the name '{node.id}'"
            if node.id in policy.QUERY_REFUSED_NAMES:
                return f"may not use the module '{node.id}'"
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
            "e.g. `def my_strategy(df): ...` (a class-based strategy needs one too: "
            "`def strategy(df): return MyStrategy().run(df)`)"
        )
    if len(candidates) > 1:
        raise PolicyError(
            f"several candidate strategy functions ({', '.join(candidates)}): keep one "
            "function of one argument, or name helpers with a leading underscore"
        )
    return candidates[0], names


SECOND_ARGS = ("params", "grid")
"""Names of a strategy's second argument: one combination's ``params``, or a whole
sweep chunk's ``grid`` (every combination as columns, docs/sweeps.md)."""


def takes_params(fn: ast.FunctionDef) -> bool:
    """Whether the strategy function takes ``params`` (or ``grid``) as its second
    positional parameter."""
    positional = fn.args.posonlyargs + fn.args.args
    return len(positional) >= 2 and positional[1].arg in SECOND_ARGS


def entry_takes_params(tree: ast.Module, entry: str) -> bool:
    """Whether the entry function ``entry`` of ``tree`` is called as ``entry(df, params)``."""
    return any(
        isinstance(n, ast.FunctionDef) and n.name == entry and takes_params(n) for n in tree.body
    )


@dataclass(frozen=True)
class Review:
    """Everything the policy says about a source, without raising: see :func:`review`."""

    findings: tuple[Finding, ...]
    entry: str | None
    takes_params: bool
    functions: tuple[str, ...]
    imports: tuple[str, ...]
    tree: ast.Module | None
    code: CodeType | None = None

    @property
    def ok(self) -> bool:
        return not self.findings

    def error(self) -> PolicyError | ModuleUnavailable | StrategySyntaxError:
        """The error a run of this source ends with (only when there are findings)."""
        return _error(list(self.findings))


def _error(findings: list[Finding]) -> PolicyError | ModuleUnavailable | StrategySyntaxError:
    shown = findings[: policy.MAX_FINDINGS]
    more = len(findings) - len(shown)
    lines = [str(f) for f in shown] + ([f"... and {more} more"] if more > 0 else [])
    syntax = next((f for f in findings if f.kind == "syntax"), None)
    if syntax is not None:
        return StrategySyntaxError(syntax.message, line=syntax.line)
    text = lines[0] if len(lines) == 1 else f"{len(findings)} findings:\n" + "\n".join(lines)
    if all(f.kind == "module_unavailable" for f in findings):
        error: PolicyError | ModuleUnavailable = ModuleUnavailable(text)
    else:
        error = PolicyError(text)
    error.findings = tuple(f.as_dict() for f in findings)
    return error


def review(source: str) -> Review:
    """Every finding of ``source`` at once, and the entry it would call; runs nothing."""
    try:
        tree = parse(source)
    except StrategySyntaxError as exc:
        finding = Finding("syntax", exc.line, str(exc))
        return Review((finding,), None, False, (), (), None)
    except PolicyError as exc:
        message = str(exc).removeprefix("Security validation failed: ")
        return Review((Finding("policy", 0, message),), None, False, (), (), None)
    checker = _Checker()
    try:
        checker.visit(tree)
    except RecursionError:
        checker.findings.append(
            Finding("policy", 0, "the strategy code is too deeply nested to check; simplify it")
        )
    findings = sorted(checker.findings, key=lambda f: (f.line, f.column))
    code: CodeType | None = None
    try:
        code = compile(tree, FILENAME, "exec", dont_inherit=True)
    except SyntaxError as exc:
        findings.append(Finding("syntax", exc.lineno or 0, syntax_message(source, exc)))
    except (MemoryError, RecursionError, ValueError):
        findings.append(Finding("policy", 0, "the strategy code is too complex to compile"))
    entry: str | None = None
    names: tuple[str, ...] = ()
    try:
        entry, names = pick_entry(tree)
    except PolicyError as exc:
        findings.append(Finding("policy", 0, str(exc).removeprefix("Security validation failed: ")))
    return Review(
        findings=tuple(findings),
        entry=entry,
        takes_params=entry is not None and entry_takes_params(tree, entry),
        functions=names,
        imports=tuple(dict.fromkeys(checker.imports)),
        tree=tree,
        code=code,
    )


def check(source: str) -> PolicyReport:
    """Parse ``source`` once, check it, pick its entry and compile the checked tree.

    Raises the error of :meth:`Review.error` listing every finding.
    """
    found = review(source)
    if found.findings:
        raise found.error()
    assert found.tree is not None and found.entry is not None and found.code is not None
    return PolicyReport(
        entry=found.entry,
        takes_params=found.takes_params,
        functions=found.functions,
        imports=found.imports,
        tree=found.tree,
        code=found.code,
    )
