"""When a collection's whitening is fitted, refitted or dropped, for `whysim index` and `whysim compact`.

Fitted once a collection has MIN_VECTORS vectors, refitted when it has grown REFIT_GROWTH times
past the collection it was fitted on (and on every `compact`), dropped with `--whitening off`.
The choice is remembered in the catalog like the index type. A (re)fit maps the stored vectors
back to the branch's own (Whitening.invert) and forward through the new transform: nothing is
embedded again, and the new vectors and transform are saved together in one file.
"""
from __future__ import annotations

import json
import logging

from indexer.catalog.repository import Catalog
from indexer.model.whitening import MAX_FIT_VECTORS, MIN_VECTORS, fit_whitening
from indexer.vectors import VectorStore

logger = logging.getLogger(__name__)

WHITENING_SETTING = "whitening"  # "auto" (default) or "off"
FITTED_SETTING = "whitening_fit"  # {"digest", "vectors"} of the transform in force
WHITENING_CHOICES = ("auto", "off")
# Refit once the collection is this many times the one the transform was fitted on.
REFIT_GROWTH = 2.0


def remember_choice(catalog: Catalog, choice: str | None) -> str:
    """Stores an explicit --whitening choice; returns the one in force."""
    if choice is not None:
        if choice not in WHITENING_CHOICES:
            raise ValueError(f"unknown whitening choice {choice!r}; choose one of {', '.join(WHITENING_CHOICES)}")
        catalog.set_setting(WHITENING_SETTING, None if choice == "auto" else choice)
    return catalog.get_setting(WHITENING_SETTING) or "auto"


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
