"""A child's memory holds only its own task: checked from the inside, with the policy off.

The real sandbox host (``python -m strategyq.executor.sandbox_host``, as every
executor starts it) first runs a task whose symbols, dates, strategy and result
carry distinctive markers, on a store whose directory name is a marker too.
Then a child of the same host, for another task, undoes ``gc.freeze()``, walks
``gc.get_objects()`` and reads every readable region listed in
``/proc/self/maps`` through ``/proc/self/mem``: it must find none of the
markers, and no object of the data store.

The snooping child runs without Landlock and seccomp (``insecure_no_sandbox``)
only so that it may open ``/proc/self/maps`` and ``/proc/self/mem``: the
layers stop a child from opening files, they do not change what is in its
memory (a child with the layers on reads the same bytes through ctypes).
The needles travel XOR-masked and the scan un-masks memory, never the
needles, so the scanner cannot find its own search terms.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from strategyq import errors
from strategyq.data.store import Store
from strategyq.data.synth import synthetic_bars, write_synthetic
from strategyq.sandbox.forkclient import ForkClient
from strategyq.sandbox.lockdown import TASK_UID_BASE
from strategyq.settings import SandboxLimits, Settings

LIMITS = SandboxLimits(time_limit_s=120, memory_mb=1024, answer_max_bytes=1 << 20)
MASK = 0x5A

SYMBOLS = ["QZMARKSYMALPHA77", "QZMARKSYMBRAVO78"]
START, END = "2022-11-17T00:00:00", "2024-10-23T00:00:00"
STRATEGY_MARK = "QZSTRATMARK4471"
RESULT_MARK = "QZRESULTMARK5523"
DIR_MARK = "qzdirmark9157"
MARKERS = {
    "symbol": SYMBOLS[0],
    "symbol2": SYMBOLS[1],
    "start date": START[:10],
    "end date": END[:10],
    "strategy": STRATEGY_MARK,
    "result": RESULT_MARK,
    "data dir": DIR_MARK,
}

EARLIER = f"""
def marked(df):
    # {STRATEGY_MARK}
    return [{{'ticker': str(df['ticker'].iloc[0]), 'note': '{RESULT_MARK}'}}]
"""

SNOOP = """
import gc, os, re
import numpy as np

MASKED = {masked!r}
NAMES = {names!r}
KEY = {key}
# {own_mark}

def snoop(df):
    # A child is not dumpable, which makes /proc/self/mem root's; as its own uid it may
    # make itself dumpable again (reading its own memory needs no more).
    import ctypes
    ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)
    pattern = re.compile(b"|".join(re.escape(bytes.fromhex(m)) for m in MASKED))
    needles = [bytes.fromhex(m) for m in MASKED]
    found = set()
    chunk = 1 << 22
    overlap = 64
    raw = bytearray(chunk + overlap)
    view = memoryview(raw)
    plain = np.zeros(chunk + overlap, dtype=np.uint8)
    with open("/proc/self/maps", "rb") as f:
        maps = f.read().decode().splitlines()
    regions = []
    for line in maps:
        fields = line.split()
        if fields[1][0] != "r":
            continue
        lo, hi = (int(x, 16) for x in fields[0].split("-"))
        regions.append((lo, hi, fields[5] if len(fields) > 5 else ""))
    mem = os.open("/proc/self/mem", os.O_RDONLY)
    scanned = 0
    unreadable = []
    for lo, hi, name in regions:
        at = lo
        while at < hi:
            want = min(chunk + overlap, hi - at)
            try:
                n = os.preadv(mem, [view[:want]], at)
            except OSError:
                unreadable.append(name)
                break
            if n <= 0:
                break
            scanned += n
            at += chunk
            # Every needle has a non-zero byte, so a chunk of zeros (memory reserved but
            # never written) holds none: skipped after its read, which still counts.
            if not np.frombuffer(raw, dtype=np.uint8, count=n).any():
                continue
            np.bitwise_xor(np.frombuffer(raw, dtype=np.uint8, count=n), KEY, out=plain[:n])
            for hit in pattern.finditer(memoryview(plain)[:n]):
                found.add(NAMES[needles.index(hit.group())])
            plain[:n] = 0
    os.close(mem)
    # Then the objects: every container the collector knows, frozen ones included.
    gc.unfreeze()
    table = bytes(b ^ KEY for b in range(256))
    strings = 0
    store_objects = set()
    for obj in gc.get_objects():
        module = getattr(type(obj), "__module__", "")
        if isinstance(module, str) and module.startswith("strategyq.data"):
            store_objects.add(type(obj).__name__)
        # The base types' own methods: a library's lazy mapping (or proxy) answers its
        # overridden ones by importing what it stands for.
        kind = type(obj)
        if issubclass(kind, dict):
            items = [*dict.keys(obj), *dict.values(obj)]
        elif issubclass(kind, list):
            items = list.copy(obj)
        elif issubclass(kind, tuple):
            items = tuple.__getitem__(obj, slice(None))
        elif issubclass(kind, set):
            items = list(set.copy(obj))
        elif issubclass(kind, frozenset):
            items = list(frozenset.copy(obj))
        else:
            continue
        for item in items:
            if isinstance(item, str):
                data = item.encode("utf-8", "replace")
            elif isinstance(item, bytes):
                data = item
            else:
                continue
            strings += 1
            for hit in pattern.finditer(data.translate(table)):
                found.add("object:" + NAMES[needles.index(hit.group())])
    return [{{
        "ticker": str(df["ticker"].iloc[0]),
        "found": sorted(found),
        "store_objects": sorted(store_objects),
        "scanned": scanned,
        "regions": len(regions),
        "strings": strings,
    }}]
"""


def snoop_code(own_mark: str = "nothing of note") -> str:
    names = list(MARKERS)
    masked = [bytes(b ^ MASK for b in MARKERS[n].encode()).hex() for n in names]
    return SNOOP.format(masked=masked, names=names, key=MASK, own_mark=own_mark)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp(DIR_MARK) / "data"
    write_synthetic(root, 2, 3, seed=3)
    bars = synthetic_bars(2, 3, seed=4)
    Store(root).upsert(dataclasses.replace(bars, tickers=SYMBOLS))
    return root


@pytest.fixture(scope="module")
def client(store: Path) -> Iterator[ForkClient]:
    """One sandbox host for the module's tests: each task runs in a fresh child of it, and
    the tests here are about what those children see and send, so a host per test would
    only add its start-up (and the later tests' children then follow every earlier
    test's, which is the situation the memory scan is about)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    # Every strategy here imports nothing beyond the standard library and NumPy, so each
    # runs in a child of the lean fork server. The host starts only that server: one that
    # preloads every library would add seconds of start-up to each test and hold pages no
    # child of these tests is forked from.
    settings = Settings.from_env(
        {"STRATEGYQ_HOME": str(store.parent), "STRATEGYQ_SANDBOX_LIBRARIES": "none"},
        data_cache_mb=64,
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "strategyq.executor.sandbox_host", str(theirs.fileno()),
         settings.for_child_process().decode()],
        pass_fds=(theirs.fileno(),),
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
    )  # fmt: skip
    theirs.close()
    ready = orjson.loads(ours.recv(1 << 16))
    assert ready["ready"], ready
    try:
        yield ForkClient(ours, spares=False)
    finally:
        ours.close()
        process.wait(30)


def request(symbols: list[str], start: str, end: str) -> dict[str, object]:
    return {
        "symbols": symbols,
        "start": start,
        "end": end,
        "adjusted": True,
        "warmup_sessions": 20,
        "lookback_sessions": None,
    }


def test_a_child_finds_no_trace_of_an_earlier_task_in_its_memory(client: ForkClient) -> None:
    earlier = request(SYMBOLS, START, END)
    value, _ = client.run(EARLIER, earlier, LIMITS)
    assert value == [{"ticker": SYMBOLS[0], "note": RESULT_MARK}]

    later = request(["SYN0001"], "2024-01-02T00:00:00", "2024-06-28T00:00:00")
    value, _ = client.run(snoop_code(), later, LIMITS, check_policy=False, insecure_no_sandbox=True)
    answer = value[0]
    assert answer["ticker"] == "SYN0001"
    # The scan read the whole address space, and the walk saw the interpreter's objects.
    assert answer["scanned"] > 50 * 1024 * 1024, answer
    assert answer["strings"] > 10_000, answer
    assert answer["found"] == [], answer
    assert answer["store_objects"] == [], answer


def test_the_same_scan_finds_what_its_own_task_holds(client: ForkClient) -> None:
    # The control: the snoop's own request names the marked symbols and its own source
    # carries the strategy marker, so the scan must find both (it reads what it should).
    own = request(SYMBOLS, START, END)
    code = snoop_code(own_mark=STRATEGY_MARK)
    value, _ = client.run(code, own, LIMITS, check_policy=False, insecure_no_sandbox=True)
    found = value[0]["found"]
    assert "symbol" in found and "strategy" in found, value
    assert "result" not in found and "data dir" not in found, value


# x86-64 machine code: bomb(attempts, stack_top, futex_word) makes raw clone() calls with
# thread flags (CLONE_VM|FS|FILES|SIGHAND|THREAD|SYSVSEM); each thread waits on the futex
# word forever. Returns successes | (errno of the first failure << 32). Source in
# tests/unit/sandbox_corpus.py (THREAD_BOMB_ASM).
THREAD_BOMB = """
import ctypes

CODE = bytes.fromhex("{code}")

def bomb(df):
    libc = ctypes.CDLL(None)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    text = libc.mmap(None, 4096, 7, 0x22, -1, 0)          # PROT_READ|WRITE|EXEC, anonymous
    ctypes.memmove(text, CODE, len(CODE))
    stacks = libc.mmap(None, 1 << 20, 3, 0x22, -1, 0)
    word = ctypes.c_int(0)
    run = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_uint64, ctypes.c_uint64, ctypes.c_uint64)(text)
    out = run({attempts}, stacks + (1 << 20) - 64, ctypes.addressof(word))
    libc.geteuid.restype = ctypes.c_uint
    nproc = (ctypes.c_ulong * 2)()
    libc.getrlimit(6, nproc)                              # RLIMIT_NPROC: names the cap's route
    return [{{"ticker": "X", "threads": out & 0xFFFFFFFF, "errno": out >> 32,
             "euid": libc.geteuid(), "nproc": nproc[0]}}]
"""


def thread_bomb(attempts: int = 3000) -> str:
    from tests.unit.sandbox_corpus import THREAD_BOMB_HEX

    return THREAD_BOMB.format(code=THREAD_BOMB_HEX, attempts=attempts)


NORMAL = "def s(df):\n    return [{'ticker': str(df['ticker'].iloc[0]), 'n': len(df)}]\n"


@pytest.mark.parametrize("max_threads", [64, 8])
def test_a_raw_clone_thread_bomb_stops_at_the_cap(client: ForkClient, max_threads: int) -> None:
    limits = dataclasses.replace(LIMITS, time_limit_s=20, max_threads=max_threads)
    later = request(["SYN0001"], "2024-01-02T00:00:00", "2024-06-28T00:00:00")
    value, _ = client.run(thread_bomb(), later, limits, check_policy=False)
    # The child's own thread counts: at most max_threads - 1 more, then EAGAIN.
    assert value[0]["threads"] == max_threads - 1, value
    assert value[0]["errno"] == 11, value
    # The root route: a uid of the child's own, with RLIMIT_NPROC the cap.
    assert value[0]["euid"] > TASK_UID_BASE and value[0]["nproc"] == max_threads, value
    # The host carries on: the next task is answered, and so is another bomb.
    assert client.run(NORMAL, later, limits)[0][0]["n"] > 0
    assert client.run(thread_bomb(), later, limits, check_policy=False)[0][0]["threads"] == (
        max_threads - 1
    )


def test_the_thread_bomb_is_refused_by_the_policy(client: ForkClient) -> None:
    later = request(["SYN0001"], "2024-01-02T00:00:00", "2024-06-28T00:00:00")
    with pytest.raises(errors.PolicyError):
        client.run(thread_bomb(), later, LIMITS)
    assert client.run(NORMAL, later, LIMITS)[0][0]["n"] > 0


def _peak_rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


RAW_ERROR_WITH_LOGS = """
import os, orjson

def raw(df):
    head = b'E' + orjson.dumps({"type": "strategy_error", "message": "raw"})
    logs = orjson.dumps({"logs": "L" * (20 << 20), "truncated": False})
    view = memoryview(head + b"\\x00" + logs)
    while view:
        view = view[os.write(3, view):]
    os._exit(0)
"""


GC_STATE = """
import gc

def collector(df):
    return [{'ticker': str(df['ticker'].iloc[0]), 'on': gc.isenabled(),
             'frozen': gc.get_freeze_count()}]
"""


def test_a_task_runs_with_the_cyclic_collector_on(client: ForkClient) -> None:
    # The fork server warms up with the collector paused; its children must not inherit
    # that. What it imported is frozen, so a child's collections never walk those pages.
    window = request(["SYN0001"], "2024-01-02", "2024-02-01")
    value, _ = client.run(GC_STATE, window, LIMITS, check_policy=False)
    assert value[0]["on"] is True, value
    assert value[0]["frozen"] > 100_000, value


def test_a_raw_error_answer_with_20_mib_of_logs_is_cut_to_the_cap(client: ForkClient) -> None:
    """What the child's own 64 KiB cap would refuse, sent raw (policy off): the parent cuts it."""
    limits = dataclasses.replace(LIMITS, answer_max_bytes=32 << 20)
    later = request(["SYN0001"], "2024-01-02T00:00:00", "2024-06-28T00:00:00")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _peak_rss_mib()
    started = time.monotonic()
    with pytest.raises(errors.StrategyFailed) as info:
        client.run(RAW_ERROR_WITH_LOGS, later, limits, check_policy=False)
    elapsed = time.monotonic() - started
    growth = _peak_rss_mib() - before
    logs = info.value.logs  # type: ignore[attr-defined]
    assert logs.truncated is True and len(logs.text) == 64 * 1024
    # The read buffer, its copy and the parsed logs: about 3 × the 20 MiB (docs/security.md).
    assert growth < 4 * 20, growth
    assert elapsed < 20, elapsed
    assert client.run(NORMAL, later, LIMITS)[0][0]["n"] > 0


RAW_COLUMNS = """
import os, orjson

def raw(df):
    # A columns answer the child's own checks would have sent as rows ({ROWS:,} rows):
    # rows of one small number, or rows that repeat a long key past the cap.
    body = orjson.dumps({{"columns": {COLUMNS}}})
    view = memoryview(b"C" + body + b"\\x00" + orjson.dumps({{"logs": "", "truncated": False}}))
    while view:
        view = view[os.write(3, view):]
    os._exit(0)
"""


def test_a_raw_columns_answer_is_judged_by_its_rows_before_any_is_built(
    client: ForkClient,
) -> None:
    """Sent raw (policy off): 3 M rows in 6 MB would be 3 M dicts; refused before they exist."""
    later = request(["SYN0001"], "2024-01-02T00:00:00", "2024-06-28T00:00:00")
    limits = dataclasses.replace(LIMITS, answer_max_bytes=32 << 20)
    code = RAW_COLUMNS.format(ROWS=3_000_000, COLUMNS="{'a': [0] * 3_000_000}")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _peak_rss_mib()
    with pytest.raises(errors.BadResult, match="dicts and lists"):
        client.run(code, later, limits, check_policy=False)
    growth = _peak_rss_mib() - before
    # The read buffer and the parsed column (a list of 3 M small ints): no row dicts.
    assert growth < 20 * 6, growth
    # 6 KB of columns whose rows repeat a 1,000-byte key 2,000 times, past the 1 MiB cap.
    wide = RAW_COLUMNS.format(ROWS=2000, COLUMNS="{('k' * 1000): [0] * 2000}")
    with pytest.raises(errors.BadResult, match="larger than 1048576 bytes"):
        client.run(wide, later, LIMITS, check_policy=False)
    assert client.run(NORMAL, later, LIMITS)[0][0]["n"] > 0
