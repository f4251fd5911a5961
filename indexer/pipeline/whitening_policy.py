"""When a collection's whitening is fitted, refitted or dropped, for `whysim index` and `whysim compact`.

Whitening helps instance-level collections (several photos of each room: same-room Recall@1 on
rooms 0.854 -> 0.902 at 448 px) and hurts collections of broad categories (flowers P@1 0.902 ->
0.898, P@10 0.848 -> 0.826), so it is fitted only where the collection looks instance-level,
judged without labels (`instance_level`): an image's best match stands out from its next few.
Fitted once a collection has MIN_VECTORS vectors and looks so, refitted when it has grown
REFIT_GROWTH times past the collection it was fitted on (and on every `compact`), dropped with
`--whitening off`.
The choice is remembered in the catalog like the index type. A (re)fit maps the stored vectors
back to the branch's own (Whitening.invert) and forward through the new transform: nothing is
embedded again, and the new vectors and transform are saved together in one file.
"""
from __future__ import annotations

import json
import logging

import numpy as np

from whysim.indexer.catalog.repository import Catalog
from whysim.indexer.model.whitening import MAX_FIT_VECTORS, MIN_VECTORS, Whitening, fit_whitening
from whysim.indexer.pipeline.options import WHITENING_CHOICES
from whysim.indexer.sampling import sample_rows
from whysim.indexer.vectors import VectorStore
from whysim.indexer.verdicts import Cohort

logger = logging.getLogger(__name__)

WHITENING_SETTING = "whitening"  # "auto" (default) or "off"
FITTED_SETTING = "whitening_fit"  # {"digest", "vectors"} of the transform in force
# Refit once the collection is this many times the one the transform was fitted on.
REFIT_GROWTH = 2.0
# instance_level: the median gap between an image's best and 5th best match, in units of the
# spread of its similarities to the collection. Measured (lite0, 448 px, unwhitened): flowers
# 0.41, rooms 1.47; at 224 px 0.45 and 0.99; at 576 px 0.36 and 1.51.
GAP_RANK = 5
INSTANCE_GAP = 0.75
GAP_SAMPLE = 1000


def instance_level(vectors: np.ndarray, sample: int = GAP_SAMPLE, seed: int = 0) -> bool:
    """Whether a collection of (unwhitened) vectors looks like groups of views of the same things
    rather than broad categories: for a seeded sample of images, (best - 5th best similarity) /
    spread of its similarities, median over the sample, >= INSTANCE_GAP."""
    matrix = np.asarray(vectors, dtype=np.float32)
    if len(matrix) <= GAP_RANK + 1:
        return False
    rows = sample_rows(len(matrix), sample, seed)
    sims = matrix[rows] @ matrix.T
    sims[np.arange(len(rows)), rows] = -np.inf  # not itself
    top = -np.sort(-np.partition(sims, -GAP_RANK, axis=1)[:, -GAP_RANK:], axis=1)
    _, spread = Cohort.sample(matrix).statistics(matrix[rows])
    gaps = (top[:, 0] - top[:, GAP_RANK - 1]) / spread
    return bool(np.median(gaps) >= INSTANCE_GAP)


def remember_choice(catalog: Catalog, choice: str | None) -> str:
    """Stores an explicit --whitening choice; returns the one in force."""
    if choice is not None:
        if choice not in WHITENING_CHOICES:
            raise ValueError(f"unknown whitening choice {choice!r}; choose one of {', '.join(WHITENING_CHOICES)}")
        catalog.set_setting(WHITENING_SETTING, None if choice == "auto" else choice)
    return catalog.get_setting(WHITENING_SETTING) or "auto"


def collection_whitening(vectors: np.ndarray, enabled: bool = True) -> Whitening | None:
    """The whitening `whysim index` would fit on a collection of these branch vectors, or None
    (too few, turned off, or a collection of broad categories)."""
    if not enabled or len(vectors) < MIN_VECTORS or not instance_level(vectors):
        return None
    return fit_whitening(vectors)


def fitted_on(catalog: Catalog, store: VectorStore) -> int:
    """How many vectors the store's transform was fitted on (its own size when unknown)."""
    if store.whitening is None:
        return 0
    try:
        record = json.loads(catalog.get_setting(FITTED_SETTING) or "{}")
    except ValueError:
        record = {}
    if record.get("digest") == store.whitening.digest():
        return int(record.get("vectors", len(store)))
    return len(store)


def wanted_refit(catalog: Catalog, store: VectorStore, choice: str, always: bool = False) -> bool | None:
    """True: fit a new transform; False: drop it; None: keep the store as it is."""
    if not hasattr(store, "rewhitened"):
        return None  # a store that cannot carry a transform atomically with its vectors (Milvus)
    if choice == "off":
        return False if store.whitening is not None else None
    if len(store) < MIN_VECTORS:
        return False if store.whitening is not None else None
    if store.whitening is None or always:
        if not instance_level(store.branch_vectors(limit=MAX_FIT_VECTORS)):
            return False if store.whitening is not None else None
        return True
    before = fitted_on(catalog, store)
    return True if before < MAX_FIT_VECTORS and len(store) >= REFIT_GROWTH * before else None


def settle_whitening(catalog: Catalog, store: VectorStore, choice: str, always: bool = False) -> VectorStore:
    """The store under the transform the policy wants (the same object when nothing changes).
    The caller saves it; the fit record is written here, after the new transform exists."""
    decision = wanted_refit(catalog, store, choice, always)
    if decision is None:
        return store
    if not decision:
        logger.info("dropping the collection whitening (%s)", "turned off" if choice == "off" else "too few vectors")
        catalog.set_setting(FITTED_SETTING, None)
        return store.rewhitened(None)
    whitening = fit_whitening(store.branch_vectors(limit=MAX_FIT_VECTORS))
    rebuilt = store.rewhitened(whitening)
    catalog.set_setting(FITTED_SETTING, json.dumps({"digest": whitening.digest(), "vectors": len(store)}))
    return rebuilt
