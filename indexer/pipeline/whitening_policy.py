"""When a collection's whitening is fitted, refitted or dropped, for `whysim index` and `whysim compact`.

Whitening helps instance-level collections (several photos of each room: same-room Recall@1 on
rooms 0.854 -> 0.902 at 448 px) and hurts collections of broad categories (flowers P@1 0.902 ->
0.898, P@10 0.848 -> 0.826), so it is fitted only where the collection looks instance-level,
judged without labels (whysim.indexer.collection_kind): an image's best match stands out from its
next few.
Fitted once a collection has MIN_VECTORS vectors and looks so, refitted when it has grown
REFIT_GROWTH times past the collection it was fitted on (and on every `compact`), dropped with
`--whitening off`.
The choice is remembered in the catalog like the index type. A (re)fit maps the stored vectors
back to the branch's own (Whitening.invert) and forward through the new transform: nothing is
embedded again, and the new vectors and transform are saved together: in one FAISS file, or in
the next generation of a Milvus collection (whysim.indexer.vector_stores.milvus_generations).
"""
from __future__ import annotations

import json
import logging

import numpy as np

from whysim.indexer.catalog.repository import Catalog
from whysim.indexer.collection_kind import instance_level
from whysim.indexer.model.whitening import MAX_FIT_VECTORS, MIN_VECTORS, Whitening, fit_whitening
from whysim.indexer.pipeline.options import WHITENING_CHOICES
from whysim.indexer.vector_stores.protocol import VectorStore

logger = logging.getLogger(__name__)

WHITENING_SETTING = "whitening"  # "auto" (default) or "off"
FITTED_SETTING = "whitening_fit"  # {"digest", "vectors"} of the transform in force
# Refit once the collection is this many times the one the transform was fitted on.
REFIT_GROWTH = 2.0
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
