"""A ChunkWriter whose chunks are written on a background thread, overlapped with embedding.

Crash safety is unchanged: chunks are written one at a time, in order, each as the plain
writer does it (vectors saved atomically, then the catalog rows; see `reconcile`). Only
the writing thread touches the vector store while a run is on. When a chunk is due while
the previous one is still being written, outcomes keep accumulating and go out together
with the next chunk; the run waits only when MAX_CHUNKS_BEHIND chunks' worth are pending,
so a slow disk bounds memory and what a crash can lose.
"""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from whysim.indexer.pipeline.writing import ChunkWriter

MAX_CHUNKS_BEHIND = 8


class BackgroundChunkWriter(ChunkWriter):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._executor: ThreadPoolExecutor | None = None
        self._writing: Future[None] | None = None

    def maybe_flush(self) -> None:
        if self._writing is not None and self._writing.done():
            self._finish_write()
        if not self.chunk_due():
            return
        if self._writing is not None:
            if self.pending_rows < MAX_CHUNKS_BEHIND * self.chunk_size:
                return  # coalesce with the next chunk
            self._finish_write()
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="whysim-write")
        self._writing = self._executor.submit(self.write_chunk, self.take_chunk())

    def flush(self) -> None:
        """Waits for the chunk in flight, then writes what is left, on the calling thread."""
        self._finish_write()
        super().flush()

    def close(self) -> None:
        """Waits for the chunk in flight and stops the thread (raises its error, if any)."""
        try:
            self._finish_write()
        finally:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None

    def _finish_write(self) -> None:
        writing, self._writing = self._writing, None
        if writing is not None:
            writing.result()  # re-raises a failed write here, on the indexing thread
