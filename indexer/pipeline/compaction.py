"""`whysim compact`: rebuilds the vector index from its stored vectors, without re-embedding.

After many removals (HNSW keeps none of them cheaply, IVF lists drift from their centroids),
after a collection grew far past the sample its IVF-PQ index was trained on, or to change
the index type. The catalog is reconciled first, so only vectors of indexed rows survive.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from whysim.indexer.catalog.database import open_catalog_engine
from whysim.indexer.catalog.repository import Catalog
from whysim.indexer.collection_kind import settle_collection_kind
from whysim.indexer.datadir import DataDir
from whysim.indexer.index_kinds import INDEX_KINDS, INDEX_TYPE_SETTING, choose_index_kind
from whysim.indexer.pipeline.reconcile import reconcile
from whysim.indexer.pipeline.whitening_policy import remember_choice, settle_whitening
from whysim.indexer.vector_stores.choice import open_location


@dataclass
class CompactReport:
    vectors: int
    index_type_before: str
    index_type: str
    orphans_removed: int
    seconds: float
    whitening: str | None = None  # digest of the transform in force after the rebuild

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def summary(self) -> str:
        change = (f"{self.index_type_before} -> {self.index_type}" if self.index_type != self.index_type_before
                  else self.index_type)
        whitened = f", whitening {self.whitening}" if self.whitening else ""
        return f"rebuilt {self.vectors} vectors into a {change} index{whitened} in {self.seconds:.1f} s"


def compact_index(datadir: DataDir, index_type: str | None = None, whitening: str | None = None) -> CompactReport:
    """Rebuilds the index. `index_type` (a kind, or "auto" to let the size decide from now on)
    is remembered for later runs of `whysim index`; None keeps the current choice. The collection's
    whitening is refitted on today's vectors (`whitening` "auto" or "off" changes the choice)."""
    if index_type not in (None, "auto", *INDEX_KINDS):
        raise ValueError(f"unknown index type {index_type!r}")
    started = time.perf_counter()
    with datadir.writer_lock():
        catalog = Catalog(open_catalog_engine(datadir.catalog_url))
        location = open_location(datadir, catalog)
        try:
            if not location.exists():
                raise FileNotFoundError(f"no vector index in {location.description}; run `whysim index` first")
            if index_type not in (None, "auto", *location.kinds):
                raise ValueError(f"index type {index_type!r} is not available with the vector store "
                                 f"{location.description}; choose {', '.join(('auto', *location.kinds))}")
            store = location.load()
            kind_before = store.kind
            repaired = reconcile(catalog, store)
            if index_type is not None:
                catalog.set_setting(INDEX_TYPE_SETTING, None if index_type == "auto" else index_type)
            wanted = catalog.get_setting(INDEX_TYPE_SETTING) or choose_index_kind(len(store))
            settle_collection_kind(catalog, store, always=True)
            rewhitened = settle_whitening(catalog, store, remember_choice(catalog, whitening), always=True)
            rebuilt = rewhitened.converted(wanted) if rewhitened is not store else store.compacted(wanted)
            location.save(rebuilt)
            vectors = len(rebuilt)
        finally:
            location.close()
            catalog.engine.dispose()
    return CompactReport(vectors, kind_before, rebuilt.kind, repaired.orphan_vectors_removed,
                         round(time.perf_counter() - started, 3),
                         rebuilt.whitening.digest() if rebuilt.whitening is not None else None)
