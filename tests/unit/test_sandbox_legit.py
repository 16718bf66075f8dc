"""The legitimate corpus through the real sandbox host, as a worker runs it.

The host is ``python -m strategyq.executor.sandbox_host`` on a synthetic store (the process
every executor starts); children are forked, locked down with the seccomp
allow-list and Landlock, and fed through :class:`ForkClient`. Every strategy
must complete, with the policy on and off.
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from strategyq import errors
from strategyq.data import MarketData
from strategyq.data.synth import write_synthetic
from strategyq.sandbox import checker, forkclient, landlock, namespace, result
from strategyq.sandbox.forkclient import ForkClient
from strategyq.settings import SandboxLimits, Settings
from tests.unit.sandbox_legit import LEGIT, Legit

LIMITS = SandboxLimits(time_limit_s=30, memory_mb=1024, answer_max_bytes=1 << 22)
SYMBOLS = ["SYN0001", "SYN0002", "SYN0003", "SYN0004"]


class Host:
    def __init__(self, root: Path) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        settings = Settings.from_env({"STRATEGYQ_HOME": str(root.parent)}, data_cache_mb=64)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "strategyq.executor.sandbox_host", str(theirs.fileno()),
             settings.for_child_process().decode()],
            pass_fds=(theirs.fileno(),),
            env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
        )  # fmt: skip
        theirs.close()
        ready = orjson.loads(ours.recv(1 << 16))
        assert ready["ready"], ready
        self.layers: dict[str, bool] = ready["layers"]
        self.servers: dict[str, dict[str, bool]] = ready["servers"]
        self.sock = ours

    def client(self, **kwargs: object) -> ForkClient:
        return ForkClient(self.sock, **kwargs)  # type: ignore[arg-type]

    def close(self) -> None:
        self.sock.close()
        assert self.process.wait(20) == 0


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("legit") / "data"
    write_synthetic(root, 6, 2, seed=7)
    return root


@pytest.fixture(scope="module")
def host(store: Path) -> Iterator[Host]:
    h = Host(store)
    try:
        yield h
    finally:
        h.close()


def request(symbols: list[str] = SYMBOLS) -> dict[str, object]:
    return {
        "symbols": symbols,
        "start": "2024-01-01T00:00:00",
        "end": "2024-12-31T00:00:00",
        "adjusted": True,
        "warmup_sessions": 250,
        "lookback_sessions": None,
    }


@pytest.fixture(scope="module")
def frame(store: Path) -> Any:
    """The frame the host loads for :func:`request`, loaded here, outside any sandbox."""
    r = request()
    return MarketData(store, cache_mb=64).load(
        r["symbols"], r["start"], r["end"], adjusted=True, warmup_sessions=250,
        lookback_sessions=None,
    ).frame  # fmt: skip


def plain(code: str, frame: Any, params: dict[str, Any] | None = None) -> list[Any]:
    """``code`` run plainly in this process (real builtins, no policy, no lock-down),
    its answer made JSON as the sandbox makes it."""
    tree = checker.parse(code)
    entry, _ = checker.pick_entry(tree)
    scope = namespace.namespace(restricted=False)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        # As in a sandbox child: warnings are shown (there, into the logs), not raised.
        warnings.simplefilter("default")
        exec(compile(tree, checker.FILENAME, "exec", dont_inherit=True), scope)
        function = scope[entry]
        view = frame.copy(deep=False)
        value = (
            function(view, dict(params or {}))
            if checker.entry_takes_params(tree, entry)
            else function(view)
        )
    return result.decode(result.encode_result(value))


def test_corpus_is_large_and_varied() -> None:
    assert len(LEGIT) >= 250
    names = {c.name for c in LEGIT}
    for prefix, least in (("exception_", 60), ("stdlib_", 30), ("class_", 10), ("tz_", 16),
                          ("lib_talib_", 19), ("lib_scipy_", 3), ("lib_statsmodels_", 5),
                          ("lib_sklearn_", 5), ("habit_", 20), ("submodule_", 7)):  # fmt: skip
        assert sum(n.startswith(prefix) for n in names) >= least, prefix
    text = "\n".join(case.code for case in LEGIT)
    for needle in ("pivot(", "pivot_table(", "stack()", "unstack(", "melt(", "crosstab(",
                   ".rolling(", ".expanding(", ".ewm(", ".transform(", ".agg(", ".rank(",
                   ".resample(", "merge_asof(", "concat(", ".join(", ".describe(", ".quantile(",
                   "value_counts(", "pd.cut(", "pd.qcut(", "strftime(", "strptime(", "today()",
                   "Timedelta(", "offsets.", "polyfit(", "percentile(", "default_rng(",
                   "np.select(", "np.where(", "import math", "import statistics",
                   "try:"):  # fmt: skip
        assert needle in text, needle


_PLAIN: dict[str, list[Any]] = {}


@pytest.mark.parametrize("case", LEGIT, ids=[c.name for c in LEGIT])
@pytest.mark.parametrize("check_policy", [True, False], ids=["policy", "no-policy"])
def test_legitimate_strategy_completes(
    host: Host, frame: Any, case: Legit, check_policy: bool
) -> None:
    client = host.client(spares=False)
    try:
        value, meta = client.run(case.code, request(), LIMITS, check_policy=check_policy)
    except errors.SandboxError as exc:
        pytest.fail(f"{case.name} ended as {exc.error_type}: {exc}")
    assert isinstance(value, list) and value, value
    assert all(isinstance(row, dict) and "ticker" in row for row in value)
    assert meta["shape"][0] > 0
    if case.name not in _PLAIN:
        _PLAIN[case.name] = plain(case.code, frame)
    expected = _PLAIN[case.name]
    assert len(value) == len(expected)
    for got, want in zip(value, expected, strict=True):
        assert got.keys() == want.keys()
        for key in want:
            assert got[key] == want[key], (case.name, key)


SWEPT = [
    c for c in LEGIT if c.name in {"class_dataclass_params_class", "lib_talib_bollinger_strategy"}
]


@pytest.mark.parametrize("case", SWEPT, ids=[c.name for c in SWEPT])
def test_a_sweep_over_a_class_based_strategy_equals_plain_runs(
    host: Host, frame: Any, case: Legit
) -> None:
    grid = [{"window": w, "z_entry": z, "n": w} for w in (10, 20, 40) for z in (0.5, 1.5)]
    if case.name.startswith("lib_talib"):
        grid = [{"n": g["n"]} for g in grid[::2]]
    else:
        grid = [{k: v for k, v in g.items() if k != "n"} for g in grid]
    client = host.client(spares=False)
    runs = [{"params": p, "until": None} for p in grid]
    values, _ = client.run(case.code, request(), LIMITS, runs=runs)
    assert len(values) == len(grid)
    for params, value in zip(grid, values, strict=True):
        assert value == plain(case.code, frame, params), params


def test_print_is_returned_as_logs(host: Host) -> None:
    client = host.client(spares=False)
    code = "def s(df):\n    print('rows', len(df))\n    print('done')\n    return []\n"
    assert client.run(code, request(), LIMITS)[0] == []
    assert client.last_logs.text.startswith("rows ")
    assert client.last_logs.text.endswith("done\n")
    assert client.last_logs.truncated is False


def test_logs_are_capped_and_flagged(host: Host) -> None:
    client = host.client(spares=False)
    code = "def s(df):\n    for i in range(100000):\n        print('x' * 100)\n    return []\n"
    assert client.run(code, request(), LIMITS)[0] == []
    assert len(client.last_logs.text.encode()) == 64 * 1024
    assert client.last_logs.truncated is True


def test_logs_come_back_with_an_error(host: Host) -> None:
    client = host.client(spares=False)
    code = "def s(df):\n    print('about to fail')\n    return 1 / 0\n"
    with pytest.raises(errors.StrategyFailed) as info:
        client.run(code, request(), LIMITS)
    assert info.value.logs.text == "about to fail\n"  # type: ignore[attr-defined]


def test_host_self_check_passes(host: Host) -> None:
    assert host.layers == {
        "landlock": True,
        "landlock_net": True,
        "seccomp": True,
        "rlimits": True,
        "no_new_privs": True,
        "canary": True,
    }


def test_both_fork_servers_report_their_layers(host: Host) -> None:
    assert set(host.servers) == {"lean", "full"}
    for name, layers in host.servers.items():
        assert layers["canary"] is True, name
        assert all(layers.values()), (name, layers)


@pytest.mark.parametrize(
    ("code", "server"),
    [
        ("import talib\ndef s(df):\n    return []\n", "full"),
        ("from scipy import stats\ndef s(df):\n    return []\n", "full"),
        ("import sklearn.linear_model\ndef s(df):\n    return []\n", "full"),
        ("import statsmodels.api as sm\ndef s(df):\n    return []\n", "full"),
        ("import math, numpy as np\nimport pandas\ndef s(df):\n    return []\n", "lean"),
        ("def s(df):\n    return []\n", "lean"),
    ],
    ids=["talib", "from-scipy", "sklearn-submodule", "statsmodels", "stdlib-numpy", "none"],
)
def test_a_strategy_is_routed_by_what_it_imports(code: str, server: str) -> None:
    assert forkclient.server_for(code) == server
    # Unchecked code may import anything at run time: it gets every library.
    assert forkclient.server_for(code, check_policy=False) == "full"


def _parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_library_and_plain_strategies_are_forked_by_different_servers(host: Host) -> None:
    client = host.client(spares=True)
    library = (
        "import talib\nfrom scipy import stats\n"
        "def s(df):\n"
        "    close = df['close'].to_numpy(dtype=float)\n"
        "    return [{'ticker': 'X', 'sma': float(talib.SMA(close, 5)[-1]),"
        " 'z': float(stats.zscore(close)[-1])}]\n"
    )
    plain_code = "def s(df):\n    return [{'ticker': 'X', 'n': len(df)}]\n"
    parents: dict[str, int] = {}
    for name, code in (("full", library), ("lean", plain_code), ("full", library)):
        value, _ = client.run(code, request(), LIMITS)
        assert value and value[0]["ticker"] == "X", value
        assert client.last_forked_by is not None
        if name in parents:
            assert parents[name] == client.last_forked_by, name
        parents[name] = client.last_forked_by
    client.close_spare()
    assert parents["full"] != parents["lean"]
    for name, pid in parents.items():
        # Both are fork servers of this host, each started with its own library list.
        assert _parent_of(pid) == host.process.pid, name
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert b"strategyq.sandbox.zygote" in argv, argv
        assert (argv[-2] == b"none") == (name == "lean"), argv


class _LeanOnly(ForkClient):
    """Sends every strategy to the lean server, as a mistaken routing would."""

    def _server_for(self, source: str, check_policy: bool) -> str:
        return "lean"


@pytest.mark.parametrize(
    "code",
    [
        "import talib\ndef s(df):\n    return []\n",
        "from scipy import stats\ndef s(df):\n    return []\n",
        "import sklearn.linear_model\ndef s(df):\n    return []\n",
    ],
    ids=["talib", "from-scipy", "sklearn-submodule"],
)
def test_a_library_strategy_in_the_lean_server_gets_module_unavailable(
    host: Host, code: str
) -> None:
    client = _LeanOnly(host.sock, spares=False)
    with pytest.raises(errors.ModuleUnavailable) as info:
        client.run(code, request(), LIMITS)
    assert "the sandbox does not provide module" in str(info.value), str(info.value)
    assert "STRATEGYQ_SANDBOX_LIBRARIES" in str(info.value), str(info.value)
    # The same host still runs it from the full server.
    assert host.client(spares=False).run(code, request(), LIMITS)[0] == []


@pytest.mark.parametrize("abi", range(1, landlock.abi_version() + 1))
def test_the_host_runs_tasks_on_every_landlock_abi(host: Host, abi: int) -> None:
    client = host.client(spares=True, landlock_abi_max=abi)
    for case in LEGIT[:: len(LEGIT) // 6]:
        value, _ = client.run(case.code, request(), LIMITS)
        assert value, case.name
    client.close_spare()


SNOOP = """
import gc, sys

def snoop(df):
    # Built at run time, so the program's own constants do not match.
    wanted = ('SYN000' + str(5), 'SYN000' + str(6), ''.join([DATA_DIR]))
    found = set()
    for obj in gc.get_objects():
        if obj is wanted or obj is found:
            continue
        try:
            text = repr(obj) if isinstance(obj, (tuple, list, dict, str)) else ''
        except Exception:
            continue
        found.update(w for w in wanted if w in text)
    frame = sys._getframe().f_back
    while frame is not None:
        for value in list(frame.f_locals.values()):
            try:
                text = repr(value) + repr(getattr(value, '__dict__', ''))
            except Exception:
                continue
            found.update(w for w in wanted if w in text)
        frame = frame.f_back
    text = repr(sys.argv) + repr(sys.orig_argv)
    found.update(w for w in wanted if w in text)
    return [{'ticker': 'X', 'found': sorted(found)}]
"""


def test_a_child_finds_no_earlier_request_nor_the_data_dir(host: Host, store: Path) -> None:
    client = host.client(spares=False)
    earlier = request(["SYN0005", "SYN0006"])
    assert client.run("def s(df):\n    return [{'ticker': 'X'}]\n", earlier, LIMITS)[0]
    # The host now caches the earlier request's frame (keyed by its symbols and dates).
    half = len(str(store)) // 2
    code = SNOOP.replace("DATA_DIR", f"{str(store)[:half]!r} + str({str(store)[half:]!r})")
    value, _ = client.run(code, request(["SYN0001"]), LIMITS, check_policy=False)
    assert value == [{"ticker": "X", "found": []}]
    # The same snoop does find them when they are in its own request: the scan works.
    value, _ = client.run(code, earlier, LIMITS, check_policy=False)
    assert "SYN0005" in value[0]["found"]


FILES_PROBE = """
import errno, os
from sklearn.datasets import load_iris
import statsmodels.api as sm

def probe(df):
    refused = {}
    for path in PATHS:
        try:
            with open(path, 'rb') as f:
                refused[path] = 'READ ' + f.read(40).decode('latin-1')
        except OSError as e:
            refused[path] = errno.errorcode.get(e.errno, str(e.errno))
    for folder in FOLDERS:
        try:
            refused[folder] = 'LISTED ' + ' '.join(os.listdir(folder))[:80]
        except OSError as e:
            refused[folder] = errno.errorcode.get(e.errno, str(e.errno))
    iris = load_iris().data.shape[0]
    macro = len(sm.datasets.macrodata.load_pandas().data)
    return [{'ticker': 'X', 'iris': iris, 'macro': macro, 'refused': refused}]
"""


def test_a_child_reads_library_data_and_nothing_else(host: Host, store: Path) -> None:
    """Through the host's full fork server, policy off: the libraries' bundled data is
    read, while the data store, the host's and fork servers' files, secrets and the
    installation beside the granted folders stay closed."""
    import numpy

    files = sorted(str(p) for p in store.rglob("*") if p.is_file())
    assert files
    pids = [host.process.pid, os.getpid(), 1]
    paths = [
        *files[:3],
        *(f"/proc/{pid}/{what}" for pid in pids for what in ("environ", "cmdline", "maps")),
        "/etc/shadow",
        "/etc/passwd",
        os.path.join(os.path.dirname(numpy.__file__), "__init__.py"),
        os.path.join(sys.prefix, "pyvenv.cfg"),
        os.path.expanduser("~/.bash_history"),
    ]
    folders = [str(store), str(store.parent), "/dev/shm", "/tmp", os.path.expanduser("~")]
    code = FILES_PROBE.replace("PATHS", repr(paths)).replace("FOLDERS", repr(folders))
    value, _ = host.client(spares=False).run(code, request(), LIMITS, check_policy=False)
    assert value[0]["iris"] == 150 and value[0]["macro"] == 203
    refused = value[0]["refused"]
    assert set(refused) == {*paths, *folders}
    assert set(refused.values()) <= {"EACCES", "ENOENT"}, refused
    assert all(refused[p] == "EACCES" for p in [*files[:3], *folders]), refused
