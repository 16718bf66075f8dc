"""Start-up of the long-running processes: warm up with the cyclic collector paused."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def warming_up() -> Iterator[None]:
    """Pause the cyclic garbage collector while a process imports and builds what it keeps.

    Importing pandas, numpy and pyarrow makes hundreds of thousands of objects that live
    as long as the process, and almost no cyclic garbage; yet every collection on the way
    walks them all again, which is a fifth of the CPU the import takes. On the way out
    everything made so far moves to the permanent generation (:func:`gc.freeze`), so no
    later collection walks it either, and the collector runs again as it did before.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()
