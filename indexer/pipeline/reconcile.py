"""Brings the catalog and the vector store back into agreement after a crash.

Invariant the writer keeps: a vector is trusted only when its catalog row says INDEXED.
Writes go vectors-first (store saved atomically), then rows, so a crash leaves at worst
vectors without an INDEXED row (removed here) or INDEXED rows without a vector (after a
lost or deleted index file: set back to PENDING and embedded again). Milvus Lite, killed
between sealing a segment and dropping its log, can replay an upsert on reopening and hold
an id twice; such copies are merged back into one vector here.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from whysim.indexer.catalog.repository import Catalog
from whysim.indexer.catalog.schema import ImageStatus
from whysim.indexer.vector_stores.protocol import VectorStore


@dataclass(frozen=True)
class ReconcileReport:
    orphan_vectors_removed: int
    rows_reset: int
    repeated_vectors_merged: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.orphan_vectors_removed or self.rows_reset or self.repeated_vectors_merged)

    @property
    def repairs(self) -> int:
        return self.orphan_vectors_removed + self.rows_reset + self.repeated_vectors_merged


def merge_repeated_ids(store: VectorStore) -> int:
    """Keeps one vector for each id the store holds more than once; returns how many ids."""
    ids, counts = np.unique(store.ids(), return_counts=True)
    repeated = ids[counts > 1]
    for image_id in repeated.tolist():
        vector = store.reconstruct(image_id)
        store.remove([image_id])  # every copy
        if vector is not None:
            store.add([image_id], vector[None, :])
    return len(repeated)


def reconcile(catalog: Catalog, store: VectorStore) -> ReconcileReport:
    merged = merge_repeated_ids(store)
    vector_ids = set(store.ids().tolist())
    indexed_ids = catalog.ids_with_status(ImageStatus.INDEXED)
    orphans = vector_ids - indexed_ids
    without_vector = indexed_ids - vector_ids
    if orphans:
        store.remove(np.fromiter(orphans, dtype=np.int64))
    if without_vector:
        catalog.set_status(without_vector, ImageStatus.PENDING)
    return ReconcileReport(len(orphans), len(without_vector), merged)
