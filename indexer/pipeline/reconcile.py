"""Brings the catalog and the vector store back into agreement after a crash.

Invariant the writer keeps: a vector is trusted only when its catalog row says INDEXED.
Writes go vectors-first (store saved atomically), then rows, so a crash leaves at worst
vectors without an INDEXED row (removed here) or INDEXED rows without a vector (after a
lost or deleted index file: set back to PENDING and embedded again).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from indexer.catalog.repository import Catalog
from indexer.catalog.schema import ImageStatus
from indexer.vector_stores.protocol import VectorStore


@dataclass(frozen=True)
class ReconcileReport:
    orphan_vectors_removed: int
    rows_reset: int

    @property
    def changed(self) -> bool:
        return bool(self.orphan_vectors_removed or self.rows_reset)


def reconcile(catalog: Catalog, store: VectorStore) -> ReconcileReport:
    vector_ids = set(store.ids().tolist())
    indexed_ids = catalog.ids_with_status(ImageStatus.INDEXED)
    orphans = vector_ids - indexed_ids
    without_vector = indexed_ids - vector_ids
    if orphans:
        store.remove(np.fromiter(orphans, dtype=np.int64))
    if without_vector:
        catalog.set_status(without_vector, ImageStatus.PENDING)
    return ReconcileReport(len(orphans), len(without_vector))
