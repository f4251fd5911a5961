"""How `whysim serve` uses glibc's heap (glibc only; elsewhere these do nothing).

Two kinds of work share the process. PyTorch (explanations; embeddings with `--runtime torch`)
allocates and frees blocks of tens of megabytes per layer: served by fresh mmaps, every layer
page-faults them in again. Threads make it worse: a thread's own arena cannot hold a block over
64 MB, so glibc maps those whatever the settings. So the server keeps one heap for every thread
(M_ARENA_MAX 1) that keeps what it frees (retain_freed_memory: no mmaps, no automatic trim).
tests/benchmarks/bench_server_heap.py, PyTorch on a worker thread at 448 px: embedding 10.6 ->
26.0 images/s, an explanation 136 -> 103 ms, against the earlier 4 MB mmap threshold.

Uploads are the other kind: a burst of large decodes leaves the heap at its peak (issue 23:
5.2 GB after 20 uploads of 7999x7999 PNGs). The decode budget bounds the peak, and
release_freed_memory (malloc_trim) hands the free pages back when the last decode of a burst
ends; malloc_trim also releases free pages in the middle of the heap, not only at its top.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging

logger = logging.getLogger(__name__)

M_ARENA_MAX = -8  # mallopt parameter number, from glibc's malloc.h


@functools.cache
def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    libc = ctypes.CDLL(name)
    return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None


def use_one_kept_heap() -> bool:
    """One heap for every thread, keeping what it frees (call before the server's threads start);
    False where not glibc."""
    from whysim.indexer.runtime.torch_session import retain_freed_memory  # imports torch: not at start-up

    libc = _libc()
    if libc is None:
        return False
    done = bool(libc.mallopt(M_ARENA_MAX, 1)) and retain_freed_memory()
    if not done:
        logger.warning("mallopt refused the heap settings; the model may page-fault its memory on every request")
    return done


def release_freed_memory() -> bool:
    """Returns free heap pages to the system (malloc_trim); False where not glibc."""
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True
