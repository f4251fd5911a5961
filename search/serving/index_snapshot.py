"""The vector index and model card being served, reloaded when `whysim index` saves a new one.

The location's stamp changes with every saved generation: the FAISS file is replaced by
atomic rename, so a changed (inode, size, mtime) means a complete new index; a Milvus
collection has a generation counter in the catalog. One thread reloads while the others keep
searching the previous snapshot; a FAISS snapshot is never modified, so searches need no lock.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from whysim.indexer.model.card import ModelCard
from whysim.indexer.vector_stores.protocol import VectorLocation, VectorStore
from whysim.indexer.verdicts import Cohort

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServedIndex:
    """An index that can be searched: its vectors, the model card that made them (same dimension),
    and the cohort verdicts normalise against (whysim.indexer.verdicts)."""

    store: VectorStore
    card: ModelCard
    cohort: Cohort


@dataclass(frozen=True)
class IndexSnapshot:
    """What the watcher read last: a ServedIndex when the index can be searched, else the problem.
    `store` and `card` are whatever could be read, for status pages, even when not served."""

    stamp: object | None
    served: ServedIndex | None = None
    problem: str | None = None
    store: VectorStore | None = None
    card: ModelCard | None = None

    @property
    def ready(self) -> bool:
        return self.served is not None


class IndexWatcher:
    def __init__(self, location: VectorLocation, read_card: Callable[[], ModelCard | None],
                 check_interval_s: float = 0.0) -> None:
        self.location = location
        self.read_card = read_card
        self.check_interval_s = check_interval_s
        self._snapshot: IndexSnapshot | None = None
        self._checked_at = 0.0
        self._load_lock = threading.Lock()
        self.reloads = 0

    def current(self) -> IndexSnapshot:
        """The newest complete index; costs one stamp (a stat(), or one catalog read) per call (or per interval)."""
        snapshot = self._snapshot
        now = time.monotonic()
        if snapshot is not None and now - self._checked_at < self.check_interval_s:
            return snapshot
        self._checked_at = now
        if snapshot is not None and self.location.stamp() == snapshot.stamp:
            return snapshot
        # Only the first load makes callers wait; later reloads let them use the old snapshot.
        if not self._load_lock.acquire(blocking=snapshot is None):
            return snapshot  # type: ignore[return-value]  # not None: blocking was False
        try:
            latest = self._snapshot
            stamp = self.location.stamp()
            if latest is not None and stamp == latest.stamp:
                return latest
            self._snapshot = self._load(stamp, latest)
            self.reloads += 1
            return self._snapshot
        finally:
            self._load_lock.release()

    def _load(self, stamp: object | None, previous: IndexSnapshot | None) -> IndexSnapshot:
        card = self.read_card()
        if stamp is None:
            return IndexSnapshot(None, problem="no index yet: run `whysim index DIR` on this data directory", card=card)
        try:
            # Stamped before reading: if the file is replaced meanwhile, the next call sees
            # a different stamp and loads again, so we never keep a stale index for long.
            store = self.location.load()
        except (RuntimeError, OSError, ValueError) as exc:
            if previous is not None and previous.served is not None:
                logger.warning("cannot read %s (%s); still serving the previous index", self.location.description, exc)
                return IndexSnapshot(stamp, previous.served, store=previous.store, card=previous.card)
            return IndexSnapshot(stamp, problem=f"cannot read the index {self.location.description}: {exc}", card=card)
        if card is None:
            return IndexSnapshot(stamp, problem="the catalog has no model yet: run `whysim index DIR`", store=store)
        if store.dim != card.dim:
            return IndexSnapshot(stamp, problem="the index is being rebuilt with another model; try again when it is done",
                                 store=store, card=card)
        return IndexSnapshot(stamp, ServedIndex(store, card, Cohort.of_store(store)), store=store, card=card)
