"""Keep a sweep's scratch memory in the executor's heap between its arrays.

A sweep chunk allocates and frees the same few dozen arrays of one to a few
MiB per step (one row per combination and session). With glibc's defaults each
is mapped fresh and given back when freed, and touching it again costs a page
fault per 4 KiB: a third of the executor's CPU on a 10 × 10 grid over 14 years.
From its first chunk on, an executor serves allocations under
``MMAP_THRESHOLD`` from its heap and returns a free heap top to the system
only past ``TRIM_THRESHOLD``: at most that much freed memory stays with it.
Larger arrays (the frames of large backtests) are still mapped and unmapped
on their own.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging

log = logging.getLogger(__name__)

MMAP_THRESHOLD = 8 << 20
TRIM_THRESHOLD = 32 << 20
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


@functools.cache
def keep_scratch_memory() -> bool:
    """Set the two thresholds once per process; False where there is no glibc ``mallopt``."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    done = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
    if not done:
        log.info("mallopt refused the sweep's heap thresholds; they stay the defaults")
    return done
