"""The automatic frame cache budget follows the memory the machine or container has left."""

from __future__ import annotations

from pathlib import Path

from strategyq.data.cache import AUTO_MAX_MB, AUTO_MIN_MB, auto_cache_mb
from strategyq.settings import Settings


def _meminfo(tmp_path: Path, available_kb: int) -> Path:
    path = tmp_path / "meminfo"
    path.write_text(f"MemTotal: 99999999 kB\nMemAvailable: {available_kb} kB\nCached: 1 kB\n")
    return path


def test_an_eighth_of_memavailable(tmp_path: Path) -> None:
    meminfo = _meminfo(tmp_path, 8 * 1024 * 1024)  # 8 GiB
    assert auto_cache_mb(meminfo, tmp_path / "no-cgroup") == 1024


def test_the_cgroup_room_wins_when_smaller(tmp_path: Path) -> None:
    meminfo = _meminfo(tmp_path, 64 * 1024 * 1024)
    cgroup = tmp_path / "cg"
    cgroup.mkdir()
    (cgroup / "memory.max").write_text(f"{4 * 1024**3}\n")
    (cgroup / "memory.current").write_text(f"{2 * 1024**3}\n")
    assert auto_cache_mb(meminfo, cgroup) == 256
    (cgroup / "memory.max").write_text("max\n")
    assert auto_cache_mb(meminfo, cgroup) == 8192
    assert auto_cache_mb(_meminfo(tmp_path, 1024**3), cgroup) == AUTO_MAX_MB


def test_bounds_and_unknown_memory(tmp_path: Path) -> None:
    assert auto_cache_mb(_meminfo(tmp_path, 1024), tmp_path) == AUTO_MIN_MB
    assert auto_cache_mb(tmp_path / "absent", tmp_path) == 1024


def test_settings_default_is_auto_and_a_number_still_wins() -> None:
    # The memory available moves between two reads: the same budget within 5 %.
    for env in ({}, {"STRATEGYQ_DATA_CACHE_MB": "auto"}):
        got, auto = Settings.from_env(env).data_cache_mb, auto_cache_mb()
        assert AUTO_MIN_MB <= got <= AUTO_MAX_MB and abs(got - auto) <= auto * 0.05, (got, auto)
    assert Settings.from_env({"STRATEGYQ_DATA_CACHE_MB": "300"}).data_cache_mb == 300
