"""Keep a long-running node's resident memory flat: give freed heap pages back to the OS (glibc).

A node allocates and frees a little for every step of every job, from the event loop and from
worker threads (staging directories, large bodies). glibc keeps freed chunks in its arenas, one
arena per thread up to 8 per core, and returns to the OS only what lies at the top of a heap: in
a 5,000-job soak a worker's RSS kept rising while the Python heap that tracemalloc sees stayed
flat. Two remedies, both no-ops where the C library is not glibc: fewer arenas (set before the
process starts its threads) and a periodic `malloc_trim(0)`, which releases the free pages of
every arena.
"""

from __future__ import annotations

import ctypes
import sys
from typing import Any

M_ARENA_MAX = -8  # mallopt parameter number, from glibc's malloc.h
ARENAS = 2
TRIM_INTERVAL_SECONDS = 30.0


def _glibc() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None


_LIBC = _glibc()


def limit_arenas(count: int = ARENAS) -> bool:
    """Cap glibc's malloc arenas (call before starting threads); False where it cannot be done."""
    return _LIBC is not None and bool(_LIBC.mallopt(M_ARENA_MAX, count))


def trim() -> bool:
    """Return the free pages of every malloc arena to the OS; True when glibc released some."""
    return _LIBC is not None and bool(_LIBC.malloc_trim(0))
