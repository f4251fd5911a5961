"""Write stage: outcomes go to the vector store and the catalog together, chunk by chunk.

Each flush removes stale vectors, adds new ones and saves the store (a new whole generation), then commits
the matching catalog rows. See `reconcile` for why this order survives a crash at any point.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from whysim.indexer.catalog.repository import Catalog
from whysim.indexer.catalog.schema import ImageStatus
from whysim.indexer.pipeline.planning import WorkItem
from whysim.indexer.pipeline.reading import ReadResult
from whysim.indexer.vector_stores.protocol import VectorLocation, VectorStore


@dataclass
class WriteCounts:
    indexed: int = 0
    unchanged: int = 0
    duplicates: int = 0
    failed: int = 0


@dataclass
class PendingChunk:
    """Outcomes recorded since the last flush, written together."""

    ids: list[int] = field(default_factory=list)
    vectors: list[np.ndarray] = field(default_factory=list)
    remove: set[int] = field(default_factory=set)
    rows: list[dict[str, object]] = field(default_factory=list)
    content_changed: set[int] = field(default_factory=set)


class ChunkWriter:
    def __init__(self, catalog: Catalog, store: VectorStore, location: VectorLocation,
                 chunk_size: int = 1024, flush_seconds: float = 30.0) -> None:
        self.catalog = catalog
        self.store = store
        self.location = location
        self.chunk_size = chunk_size
        self.flush_seconds = flush_seconds
        self.counts = WriteCounts()
        self.shas_this_run: dict[str, int] = {}
        self._pending = PendingChunk()
        self._last_flush = time.monotonic()

    # ---------------------------------------------------------------- outcomes

    def _row(self, item: WorkItem, result: ReadResult, status: ImageStatus, **extra: object) -> None:
        had_vector = item.previous_status == ImageStatus.INDEXED.value
        if had_vector and status != ImageStatus.INDEXED:
            self._pending.remove.add(item.image_id)
        if item.previous_sha is not None and result.sha256 != item.previous_sha:
            self._pending.content_changed.add(item.image_id)
        values: dict[str, object] = {
            "id": item.image_id, "status": status.value, "sha256": result.sha256,
            "size_bytes": item.size, "mtime_ns": item.mtime_ns, "error": result.error,
            "duplicate_of_id": None,
        }
        if result.width is not None:
            values.update(width=result.width, height=result.height)
        values.update(extra)
        self._pending.rows.append(values)

    def indexed(self, item: WorkItem, result: ReadResult, vector: np.ndarray) -> None:
        if item.previous_status == ImageStatus.INDEXED.value:
            self._pending.remove.add(item.image_id)  # replaced by the new vector
        self._pending.ids.append(item.image_id)
        self._pending.vectors.append(vector)
        if result.sha256:
            self.shas_this_run[result.sha256] = item.image_id
        self._row(item, result, ImageStatus.INDEXED)
        self.counts.indexed += 1

    def duplicate(self, item: WorkItem, result: ReadResult, canonical_id: int) -> None:
        self._row(item, result, ImageStatus.DUPLICATE, duplicate_of_id=canonical_id)
        self.counts.duplicates += 1

    def failed(self, item: WorkItem, result: ReadResult) -> None:
        self._row(item, result, ImageStatus.FAILED)
        self.counts.failed += 1

    def unchanged(self, item: WorkItem) -> None:
        """Same bytes under a new mtime (a touch, a copy back): keep the vector, update the stat."""
        self._pending.rows.append({"id": item.image_id, "size_bytes": item.size, "mtime_ns": item.mtime_ns})
        self.counts.unchanged += 1

    # ------------------------------------------------------------------ flush

    def chunk_due(self) -> bool:
        due = time.monotonic() - self._last_flush >= self.flush_seconds
        return len(self._pending.rows) >= self.chunk_size or (due and bool(self._pending.rows))

    @property
    def pending_rows(self) -> int:
        return len(self._pending.rows)

    def maybe_flush(self) -> None:
        if self.chunk_due():
            self.flush()

    def flush(self) -> None:
        self.write_chunk(self.take_chunk())

    def take_chunk(self) -> PendingChunk:
        """Hands over everything recorded since the last call; the writer starts a new chunk."""
        pending, self._pending = self._pending, PendingChunk()
        self._last_flush = time.monotonic()
        return pending

    def write_chunk(self, pending: PendingChunk) -> None:
        """Vectors first (store saved atomically), then the catalog rows: see `reconcile`."""
        if pending.remove or pending.ids:
            if pending.remove:
                self.store.remove(np.fromiter(pending.remove, dtype=np.int64))
            if pending.ids:
                self.store.add(np.asarray(pending.ids, dtype=np.int64), np.stack(pending.vectors))
            self.location.save(self.store)
        self.catalog.record_results(pending.rows)
        # Copies of an image whose bytes changed are no longer copies: embed them on their own.
        orphaned_copies = self.catalog.stale_duplicates(pending.content_changed)
        if orphaned_copies:
            self.catalog.set_status(orphaned_copies, ImageStatus.PENDING)
