"""app.ops.memory: freed heap pages go back to the OS (glibc only); the cyclic GC is tuned."""

from __future__ import annotations

import gc
import sys
from pathlib import Path

import pytest

from app.ops import memory


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.skipif(memory._LIBC is None, reason="malloc_trim is glibc's; elsewhere trim() is a no-op")
def test_trim_returns_fragmented_free_memory_to_the_os() -> None:
    assert sys.platform.startswith("linux")
    # 4 KiB objects come from malloc, not pymalloc; keeping every 16th alive leaves the heap
    # fragmented, so free() alone cannot shrink it.
    blocks = [bytes(4096) for _ in range(40_000)]
    kept = blocks[::16]
    del blocks
    before = _rss_kib()
    memory.trim()
    after = _rss_kib()
    assert before - after > 50_000, (before, after)  # of the ~160 MiB freed, most goes back
    assert len(kept) == 2500


def test_trim_and_limit_arenas_answer_whether_they_acted() -> None:
    assert isinstance(memory.trim(), bool)
    assert memory.limit_arenas() is (memory._LIBC is not None)


def test_gc_tuning_raises_the_young_threshold_and_freezes_what_exists() -> None:
    thresholds = gc.get_threshold()
    try:
        memory.tune_gc()
        assert gc.get_threshold() == memory.GC_THRESHOLDS
        survivor = [object()]  # a container alive at the freeze
        memory.freeze_startup_objects()
        assert gc.get_freeze_count() > 0
        assert not any(o is survivor for o in gc.get_objects())  # out of the collector's sight
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
