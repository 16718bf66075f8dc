"""The package's import graph: no circle (lazy imports included), and no Redis in the executor."""

from __future__ import annotations

import ast
import functools
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "strategyq"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imported(
    node: ast.Import | ast.ImportFrom, module: str, is_package: bool, modules: set[str]
) -> list[str]:
    """Every strategyq module an import statement names (``from a import b``: ``a.b`` if it is
    a module, else ``a``)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    base = node.module or ""
    if node.level:
        anchor = module.split(".")
        anchor = anchor if is_package else anchor[:-1]
        anchor = anchor[: len(anchor) - (node.level - 1)]
        base = ".".join([*anchor, base] if base else anchor)
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]


@functools.cache
def import_graph() -> dict[str, set[str]]:
    """Module -> the strategyq modules it imports anywhere (in functions, under TYPE_CHECKING).

    Built once for the module's tests, which only read it."""
    files = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        edges: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for name in _imported(node, module, path.name == "__init__.py", set(files)):
                    if name in files and name != module:
                        edges.add(name)
        graph[module] = edges
    # Importing a.b.c runs a/__init__ and a/b/__init__ first (the importer's own
    # packages have already run by then).
    for module, edges in graph.items():
        for edge in list(edges):
            parts = edge.split(".")
            for i in range(1, len(parts)):
                parent = ".".join(parts[:i])
                if parent in graph and parent != module and not module.startswith(parent + "."):
                    edges.add(parent)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    colour: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if colour.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in colour and (found := visit(nxt)) is not None:
                return found
        stack.pop()
        colour[node] = 2
        return None

    for node in sorted(graph):
        if node not in colour and (found := visit(node)) is not None:
            return found
    return None


def test_the_graph_sees_function_level_and_type_checking_imports() -> None:
    graph = import_graph()
    # executor.main imports the runners inside serve(); the check must see that edge.
    assert "strategyq.executor.run.dispatch" in graph["strategyq.executor.main"]
    assert "strategyq.protocol.task" in graph["strategyq.executor.run.sweep"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_the_package_has_no_import_cycle() -> None:
    cycle = _cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_executor_process_imports_no_redis_client() -> None:
    """What ``python -m strategyq.executor`` loads to serve a task: no redis, no queue package."""
    code = (
        "import sys\n"
        "import strategyq.executor.main, strategyq.executor.run.dispatch, "
        "strategyq.executor.run.payload, strategyq.executor.sandbox_host, "
        "strategyq.protocol.task, strategyq.data\n"
        "bad = sorted(m for m in sys.modules if m == 'redis' or m.startswith(('redis.', "
        "'strategyq.queue', 'strategyq.connection', 'strategyq.worker')))\n"
        "print(','.join(bad))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "", done.stdout


def test_the_sweep_package_is_pure_maths() -> None:
    """Grid, folds, constraint, rank and assemble: no I/O, sandbox, engine or executor."""
    graph = import_graph()
    sweep = {m for m in graph if m.startswith("strategyq.sweep")}
    assert sweep == {
        "strategyq.sweep",
        "strategyq.sweep.assemble",
        "strategyq.sweep.constraint",
        "strategyq.sweep.folds",
        "strategyq.sweep.grid",
        "strategyq.sweep.rank",
    }
    for module in sweep:
        assert graph[module] <= sweep | {"strategyq", "strategyq.errors"}, module
