"""Is a collection instance-level (several photos of each thing) or class-level (broad categories)?

Judged without labels from the vectors: for a seeded sample of images, the gap between an image's
best and 5th best match in units of the spread of its similarities to the collection; the median
gap is large when each image has a few true matches that stand out from many look-alikes (rooms
1.47 at 448 px) and small when every image has hundreds of near equals (flowers 0.41).

whysim decides two things with it: whether to whiten (whysim.indexer.pipeline.whitening_policy)
and which label-free verdict rule to use (whysim.indexer.verdicts.default_rule). `whysim index`
and `whysim compact` record the finding in the catalog (settle_collection_kind), so search reads
it instead of recomputing it over the whole collection.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import numpy as np

from whysim.indexer.catalog.repository import Catalog
from whysim.indexer.sampling import sample_rows
from whysim.indexer.vector_stores.protocol import VectorStore
from whysim.indexer.verdicts import Cohort

# The median gap between an image's best and 5th best match, in units of the spread of its
# similarities to the collection. Measured (lite0, 448 px, unwhitened): flowers 0.41, rooms 1.47;
# at 224 px 0.45 and 0.99; at 576 px 0.36 and 1.51.
GAP_RANK = 5
INSTANCE_GAP = 0.75
GAP_SAMPLE = 1000
# Judged on at most this many of the collection's vectors (a sample keeps each image's true
# matches only when it is most of the collection, so the sample is large).
MAX_KIND_VECTORS = 50_000
# Judged again once the collection has grown or shrunk by this factor since the last time.
REJUDGE_FACTOR = 2.0
KIND_SETTING = "collection_kind"


def instance_gap(vectors: np.ndarray, sample: int = GAP_SAMPLE, seed: int = 0) -> float:
    """For a seeded sample of images, (best - 5th best similarity) / spread of its similarities,
    median over the sample; 0 when there are too few vectors to tell."""
    matrix = np.asarray(vectors, dtype=np.float32)
    if len(matrix) <= GAP_RANK + 1:
        return 0.0
    rows = sample_rows(len(matrix), sample, seed)
    sims = matrix[rows] @ matrix.T
    sims[np.arange(len(rows)), rows] = -np.inf  # not itself
    top = -np.sort(-np.partition(sims, -GAP_RANK, axis=1)[:, -GAP_RANK:], axis=1)
    _, spread = Cohort.sample(matrix).statistics(matrix[rows])
    gaps = (top[:, 0] - top[:, GAP_RANK - 1]) / spread
    return float(np.median(gaps))


def instance_level(vectors: np.ndarray, sample: int = GAP_SAMPLE, seed: int = 0) -> bool:
    """Whether a collection of (unwhitened) vectors looks like groups of views of the same things
    rather than broad categories."""
    return instance_gap(vectors, sample, seed) >= INSTANCE_GAP


@dataclass(frozen=True)
class CollectionKind:
    instance_level: bool
    gap: float
    vectors: int  # how many vectors the collection had when it was judged

    @property
    def name(self) -> str:
        return "instance-level" if self.instance_level else "class-level"


def recorded_kind(catalog: Catalog) -> CollectionKind | None:
    try:
        return CollectionKind(**json.loads(catalog.get_setting(KIND_SETTING) or "null") or {})
    except (TypeError, ValueError):
        return None


def branch_sample(store: VectorStore, limit: int = MAX_KIND_VECTORS) -> np.ndarray:
    """Up to `limit` of the store's vectors as the branch made them (whitening undone)."""
    sampled = getattr(store, "branch_vectors", None)
    if sampled is not None:
        return np.asarray(sampled(limit=limit))
    ids = np.sort(store.ids())
    chosen = ids[sample_rows(len(ids), limit, 0)]
    found = [vector for vector in (store.reconstruct(int(i)) for i in chosen) if vector is not None]
    vectors = np.stack(found) if found else np.empty((0, store.dim), dtype=np.float32)
    return store.whitening.invert(vectors) if store.whitening is not None and len(vectors) else vectors


def settle_collection_kind(catalog: Catalog, store: VectorStore, always: bool = False) -> CollectionKind:
    """The recorded kind, judged again (and recorded) when there is none, when the collection has
    grown or shrunk REJUDGE_FACTOR times since, or when `always`."""
    known = recorded_kind(catalog)
    size = len(store)
    if known is not None and not always and known.vectors and size and \
            1 / REJUDGE_FACTOR < size / known.vectors < REJUDGE_FACTOR:
        return known
    kind = CollectionKind(False, 0.0, size) if size <= GAP_RANK + 1 else None
    if kind is None:
        gap = instance_gap(branch_sample(store))
        kind = CollectionKind(gap >= INSTANCE_GAP, round(gap, 4), size)
    catalog.set_setting(KIND_SETTING, json.dumps(asdict(kind)))
    return kind
