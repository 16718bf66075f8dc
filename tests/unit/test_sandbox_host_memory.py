"""The sandbox host gives back what a load and its copy into a memfd freed."""

from __future__ import annotations

import subprocess
import sys

# In a fresh interpreter: the resident size must not depend on what other tests left.
_PROBE = r"""
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from strategyq.sandbox.host import give_back_free_memory

def rss_mib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

base = pa.array(np.arange(400_000, dtype=np.int64))  # numpy's memory, not Arrow's
before = rss_mib()
# Many mid-sized buffers, as the store's row groups are read: Arrow's allocator keeps
# such freed pages for reuse.
chunks = [pc.add(base, i) for i in range(60)]
held = rss_mib()
del chunks
freed = rss_mib()
give_back_free_memory()
print(before, held, freed, rss_mib())
"""


def test_host_gives_back_freed_arrow_and_malloc_memory() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], check=True, capture_output=True, text=True
    ).stdout
    before, held, freed, after = map(float, out.split())
    assert held - before > 150  # ~200 MiB of buffers were resident
    assert freed - before > 150  # and stayed so once freed, kept by the allocator
    # Whatever the allocator kept after the buffers were freed, the call returns it.
    assert after - before < 30, (before, held, freed, after)
