"""A safe parser for a sweep's ``constraint`` (``"fast < slow"``): no eval, ever.

The text is parsed with :mod:`ast` in ``eval`` mode and turned into a tiny
expression tree of our own, accepting only comparisons, ``and``/``or``/``not``,
``+ - * / // %``, unary minus, numbers, strings and the names of the grid's
parameters. Anything else (a call, an attribute, a subscript, a lambda, a
name that is not a parameter) is refused with a message naming it. The tree
is evaluated by :func:`Constraint.allows` with plain Python operators on the
combination's values, so nothing the user writes is ever executed.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from strategyq.errors import TaskValidationError

MAX_CONSTRAINT_CHARS = 500
MAX_DEPTH = 32

_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
}
_ARITH: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}

# The tree: ("num", value) | ("name", str) | ("cmp", [ops], [operands]) |
# ("and", [items]) | ("or", [items]) | ("not", item) | ("neg", item) | ("arith", op, l, r)
Node = tuple[Any, ...]


@dataclass(frozen=True)
class Constraint:
    """A parsed constraint over a sweep's parameter names."""

    text: str
    tree: Node

    def allows(self, params: Mapping[str, Any]) -> bool:
        """Whether the combination satisfies the constraint.

        A comparison that cannot be evaluated on these values (a number
        compared with a string, a division by zero) is a clear error, not a
        silent skip.
        """
        try:
            return bool(_evaluate(self.tree, params))
        except (TypeError, ZeroDivisionError) as exc:
            raise TaskValidationError(
                f"args.constraint {self.text!r} cannot be evaluated on {dict(params)}: {exc}"
            ) from None


def parse_constraint(text: Any, names: Sequence[str]) -> Constraint:
    """Parse ``text`` into a :class:`Constraint` over the parameter ``names``.

    Raises:
        TaskValidationError: the text is not a plain comparison expression over
            the parameters; the message says what is not allowed.
    """
    if not isinstance(text, str) or not text.strip():
        raise TaskValidationError(
            f"args.constraint must be a non-empty string such as 'fast < slow', got {text!r}"
        )
    if len(text) > MAX_CONSTRAINT_CHARS:
        raise TaskValidationError(
            f"args.constraint is {len(text)} characters; the limit is {MAX_CONSTRAINT_CHARS}"
        )
    try:
        expression = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise TaskValidationError(
            f"args.constraint {text!r} is not a valid expression ({exc.msg}); "
            "write comparisons such as 'fast < slow and slow <= 4 * fast'"
        ) from None
    except (MemoryError, RecursionError, ValueError):
        raise TaskValidationError(f"args.constraint {text!r} is too complex; simplify it") from None
    return Constraint(text, _convert(expression.body, set(names), text, 0))


def _refuse(what: str, text: str) -> TaskValidationError:
    return TaskValidationError(
        f"args.constraint {text!r}: {what} is not allowed; use parameter names, numbers, "
        "comparisons (< <= > >= == !=), and/or/not and + - * / // %"
    )


def _convert(node: ast.AST, names: set[str], text: str, depth: int) -> Node:
    if depth > MAX_DEPTH:
        raise TaskValidationError(f"args.constraint {text!r} is nested too deeply; simplify it")
    deeper = depth + 1
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool) or value is None:
            return ("num", value)
        if isinstance(value, int | float | str):
            return ("num", value)
        raise _refuse(f"the constant {value!r}", text)
    if isinstance(node, ast.Name):
        if node.id in {"True", "False"}:
            return ("num", node.id == "True")
        if node.id not in names:
            known = ", ".join(sorted(names)) or "none"
            raise TaskValidationError(
                f"args.constraint {text!r} names {node.id!r}, which is not a parameter of the "
                f"grid (parameters: {known})"
            )
        return ("name", node.id)
    if isinstance(node, ast.Compare):
        ops = []
        for op in node.ops:
            fn = _COMPARE.get(type(op))
            if fn is None:
                raise _refuse(f"the comparison {type(op).__name__}", text)
            ops.append(fn)
        operands = [_convert(n, names, text, deeper) for n in [node.left, *node.comparators]]
        return ("cmp", ops, operands)
    if isinstance(node, ast.BoolOp):
        kind = "and" if isinstance(node.op, ast.And) else "or"
        return (kind, [_convert(v, names, text, deeper) for v in node.values])
    if isinstance(node, ast.UnaryOp):
        if isinstance(node.op, ast.Not):
            return ("not", _convert(node.operand, names, text, deeper))
        if isinstance(node.op, ast.USub):
            return ("neg", _convert(node.operand, names, text, deeper))
        if isinstance(node.op, ast.UAdd):
            return _convert(node.operand, names, text, deeper)
        raise _refuse(f"the operator {type(node.op).__name__}", text)
    if isinstance(node, ast.BinOp):
        fn = _ARITH.get(type(node.op))
        if fn is None:
            raise _refuse(f"the operator {type(node.op).__name__}", text)
        left = _convert(node.left, names, text, deeper)
        right = _convert(node.right, names, text, deeper)
        return ("arith", fn, left, right)
    raise _refuse(f"{type(node).__name__.lower()} syntax", text)


def _evaluate(node: Node, params: Mapping[str, Any]) -> Any:
    kind = node[0]
    if kind == "num":
        return node[1]
    if kind == "name":
        return params[node[1]]
    if kind == "cmp":
        ops, operands = node[1], node[2]
        values = [_evaluate(o, params) for o in operands]
        return all(op(a, b) for op, a, b in zip(ops, values, values[1:], strict=False))
    if kind == "and":
        return all(_evaluate(v, params) for v in node[1])
    if kind == "or":
        return any(_evaluate(v, params) for v in node[1])
    if kind == "not":
        return not _evaluate(node[1], params)
    if kind == "neg":
        return -_evaluate(node[1], params)
    assert kind == "arith"
    left, right = _evaluate(node[2], params), _evaluate(node[3], params)
    if isinstance(left, str) or isinstance(right, str):
        # Text times a number would build a string of any size.
        raise TypeError("arithmetic is defined on numbers only")
    return node[1](left, right)
