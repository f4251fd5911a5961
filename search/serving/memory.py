"""Handing freed memory back to the system (glibc only; elsewhere these do nothing).

glibc keeps what a process frees for reuse: large blocks come from mmap at first, but after the
first one is freed its dynamic threshold rises (up to 32 MB), so later decodes' 16 MB pixel
blocks (PIL's) come from the heap and per-thread arenas, and the server's size stays at its peak
after a burst of large uploads (issue 23: 5.2 GB after 20 uploads). A fixed mmap threshold sends
such blocks back to the system as soon as they are freed, and malloc_trim returns what the
heaps still hold once a burst is over.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging

logger = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # mallopt parameter numbers, from glibc's malloc.h
M_ARENA_MAX = -8
MMAP_THRESHOLD_BYTES = 4 * 2**20  # above this, allocations are mapped and unmapped on their own
ARENA_MAX = 4  # request threads share a few heaps instead of one each (glibc's default: 8 per core)


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    libc = ctypes.CDLL(name)
    return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None


def keep_heap_small() -> bool:
    """Fixes the mmap threshold and caps the arenas, for a long-running server; False where not glibc."""
    libc = _libc()
    if libc is None:
        return False
    done = bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(libc.mallopt(M_ARENA_MAX, ARENA_MAX))
    if not done:
        logger.warning("mallopt refused the heap settings; memory freed after large uploads may stay with the process")
    return done


def release_freed_memory() -> bool:
    """Returns free heap pages to the system (malloc_trim); False where not glibc."""
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True
