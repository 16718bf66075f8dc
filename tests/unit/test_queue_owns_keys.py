"""Only ``strategyq.queue`` names a Redis key or calls the Redis client for task state.

Everything else reads through :class:`strategyq.queue.view.QueueView` and writes
through the queue's transitions, the producer API and the dead-letter and
schedule functions. This reads every module of ``src/strategyq`` outside
``queue/`` (its code, not its docstrings) and fails on:

- a string that names a key: ``strategyq:…``, ``task_result:…``, ``strategy_queue``;
- an import of ``strategyq.queue.keys``;
- a Redis command called on something that looks like a client or a pipeline
  (``client.get(…)``, ``state.client.lrange(…)``, ``pipe.zrange(…)``, …).

The exceptions below are the only ones, each with its reason.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src" / "strategyq"
KEY_STRINGS = ("strategyq:", "task_result:", "strategy_queue")
COMMANDS = frozenset(
    re.split(
        r"\s+",
        """get set mget mset getdel getex incr incrby decr delete unlink exists expire pexpire
    ttl pttl type keys scan scan_iter lrange llen lindex lpush rpush lpop rpop lrem lmove
    blmove blpop brpop rpoplpush hget hgetall hset hsetnx hdel hkeys hvals hlen hmget hscan
    hscan_iter smembers sadd srem scard sismember sscan sscan_iter zadd zrem zrange zrevrange
    zrangebyscore zrevrangebyscore zcard zcount zscore zmscore zscan zscan_iter publish
    pubsub eval evalsha register_script xadd xrange xread ping info config_get config_set
    flushdb flushall""",
    )
)
CLIENT_NAMES = frozenset(
    {"client", "redis_client", "redis", "pipe", "pipeline", "_client", "_redis", "pubsub"}
)
# Short names that also stand for rows and dicts (``r.get(key)``): only commands no dict has.
LOOSE_NAMES = frozenset({"r", "conn", "probe", "primary", "replica"})
DICT_METHODS = frozenset({"get", "keys", "set", "type", "delete", "info", "exists", "scan"})


@dataclass(frozen=True)
class Allowed:
    what: str  # "ping" (a command) or a piece of a string
    reason: str


ALLOWED = (
    Allowed("ping", "connection health (readiness probes, reconnects), not task state"),
    Allowed("info", "server facts (version, memory, persistence) for preflight and status"),
    Allowed("config_get", "the server's eviction and persistence policy, checked at start"),
    Allowed(
        "strategy_queue",
        "the default of STRATEGYQ_QUEUE in settings.py: a setting (the producers' list name)",
    ),
    Allowed(
        "is at task_result:",
        "the message of a duplicate task id tells its producer where the other task's "
        "result is, in the wire format's own words",
    ),
)
# Modules that may import strategyq.queue.keys, and why.
KEYS_IMPORT_ALLOWED = {
    "sweep/execute.py": "for keys.chunk_id only: a chunk's task id, which names no key",
}


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}"


def _docstrings(tree: ast.AST) -> set[int]:
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
        # Attribute docstrings: a bare string right after an assignment.
        body = getattr(node, "body", None)
        if isinstance(body, list):
            for stmt in body[1:]:
                if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
                    ids.add(id(stmt.value))
    return ids


def _receiver(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def findings(path: Path, rel: str) -> list[Finding]:
    tree = ast.parse(path.read_text(), filename=rel)
    skip = _docstrings(tree)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            for key in KEY_STRINGS:
                if key in node.value and not any(a.what in node.value for a in ALLOWED):
                    out.append(Finding(rel, node.lineno, f"names a key: {node.value[:60]!r}"))
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            names = {f"{node.module}.{a.name}" for a in node.names} | {node.module}
            if "strategyq.queue.keys" in names and rel not in KEYS_IMPORT_ALLOWED:
                out.append(Finding(rel, node.lineno, "imports strategyq.queue.keys"))
        elif isinstance(node, ast.Import):
            keys_import = any(a.name == "strategyq.queue.keys" for a in node.names)
            if keys_import and rel not in KEYS_IMPORT_ALLOWED:
                out.append(Finding(rel, node.lineno, "imports strategyq.queue.keys"))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in COMMANDS
        ):
            receiver = _receiver(node.func.value)
            clientish = (
                receiver in CLIENT_NAMES
                or receiver.endswith("client")
                or (receiver in LOOSE_NAMES and node.func.attr not in DICT_METHODS)
            )
            if clientish and not any(a.what == node.func.attr for a in ALLOWED):
                call = ast.unparse(node.func)
                out.append(Finding(rel, node.lineno, f"calls Redis: {call}(…)"))
    return sorted(out, key=lambda f: (f.line, f.what))


def scan() -> list[Finding]:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC).as_posix()
        if rel.startswith("queue/"):
            continue
        found.extend(findings(path, rel))
    return found


def test_only_the_queue_package_names_keys_or_calls_redis_for_task_state() -> None:
    found = scan()
    assert not found, (
        "outside strategyq/queue/, read through QueueView (strategyq.queue.view) and write "
        "through the queue's functions:\n" + "\n".join(map(str, found))
    )


def test_the_scan_finds_what_it_looks_for(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        '"""Docstrings may say task_result:{id}."""\n'
        "from strategyq.queue import keys\n"
        "def f(client, state, r):\n"
        "    client.llen('strategyq:dead_letter')\n"
        "    state.client.get(keys.result('x'))\n"
        "    r.zrevrange('k', 0, 1)\n"
        "    client.ping()\n"
        "    return r.get('x'), {}.get('x')\n"
    )
    found = [f.what for f in sorted(findings(sample, "sample.py"), key=lambda f: f.line)]
    assert found == [
        "imports strategyq.queue.keys",
        "calls Redis: client.llen(…)",
        "names a key: 'strategyq:dead_letter'",
        "calls Redis: state.client.get(…)",
        "calls Redis: r.zrevrange(…)",
    ], found
