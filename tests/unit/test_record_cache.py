"""A decoded finished result is reused only while its finish time is unchanged."""

from __future__ import annotations

from strategyq.api.record_cache import RecordCache


def test_an_entry_holds_while_the_finish_time_is_the_same() -> None:
    cache = RecordCache(size=2)
    entry = cache.put("a", 100, {"status": "completed"})
    entry.derived["rows"] = [1, 2]
    assert cache.get("a", 100) is entry and cache.get("a", 100).derived["rows"] == [1, 2]
    # The task ran again (a new finish time), or the index lost it: read it afresh.
    assert cache.get("a", 101) is None
    assert cache.get("a", None) is None
    assert cache.get("b", 100) is None


def test_the_least_recently_used_entry_goes_first() -> None:
    cache = RecordCache(size=2)
    cache.put("a", 1, {})
    cache.put("b", 1, {})
    assert cache.get("a", 1) is not None  # a is now the most recent
    cache.put("c", 1, {})
    assert cache.get("b", 1) is None
    assert cache.get("a", 1) is not None and cache.get("c", 1) is not None
