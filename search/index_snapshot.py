"""The FAISS index and model card being served, reloaded when `whysim index` replaces the file.

The indexer saves the vectors file by atomic rename, so a changed (inode, size, mtime) means
a complete new index. One thread reloads while the others keep searching the previous
snapshot; a snapshot is never modified, so searches need no lock.
"""
from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from indexer.model.card import ModelCard
from indexer.vectors import VectorStore
from indexer.verdicts import Cohort

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileStamp:
    inode: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> FileStamp | None:
        try:
            stat = os.stat(path)
        except OSError:
            return None
        return cls(stat.st_ino, stat.st_size, stat.st_mtime_ns)


@dataclass(frozen=True)
class IndexSnapshot:
    store: VectorStore | None
    card: ModelCard | None
    stamp: FileStamp | None
    problem: str | None = None  # why this snapshot cannot be searched, when it cannot
    cohort: Cohort | None = None  # what verdicts normalise against (indexer.verdicts)

    @property
    def ready(self) -> bool:
        return self.problem is None and self.store is not None and self.card is not None


class IndexWatcher:
    def __init__(self, vectors_path: Path, read_card: Callable[[], ModelCard | None],
                 check_interval_s: float = 0.0) -> None:
        self.vectors_path = vectors_path
        self.read_card = read_card
        self.check_interval_s = check_interval_s
        self._snapshot: IndexSnapshot | None = None
        self._checked_at = 0.0
        self._load_lock = threading.Lock()
        self.reloads = 0

    def current(self) -> IndexSnapshot:
        """The newest complete index; costs one stat() per call (or per interval)."""
        snapshot = self._snapshot
        now = time.monotonic()
        if snapshot is not None and now - self._checked_at < self.check_interval_s:
            return snapshot
        self._checked_at = now
        if snapshot is not None and FileStamp.of(self.vectors_path) == snapshot.stamp:
            return snapshot
        # Only the first load makes callers wait; later reloads let them use the old snapshot.
        if not self._load_lock.acquire(blocking=snapshot is None):
            return snapshot  # type: ignore[return-value]  # not None: blocking was False
        try:
            latest = self._snapshot
            stamp = FileStamp.of(self.vectors_path)
            if latest is not None and stamp == latest.stamp:
                return latest
            self._snapshot = self._load(stamp, latest)
            self.reloads += 1
            return self._snapshot
        finally:
            self._load_lock.release()

    def _load(self, stamp: FileStamp | None, previous: IndexSnapshot | None) -> IndexSnapshot:
        card = self.read_card()
        if stamp is None:
            return IndexSnapshot(None, card, None, "no index yet: run `whysim index DIR` on this data directory")
        try:
            # Stamped before reading: if the file is replaced meanwhile, the next call sees
            # a different stamp and loads again, so we never keep a stale index for long.
            store = VectorStore.load(self.vectors_path)
        except (RuntimeError, OSError, ValueError) as exc:
            if previous is not None and previous.ready:
                logger.warning("cannot read %s (%s); still serving the previous index", self.vectors_path, exc)
                return IndexSnapshot(previous.store, previous.card, stamp, cohort=previous.cohort)
            return IndexSnapshot(None, card, stamp, f"cannot read the index {self.vectors_path.name}: {exc}")
        if card is None:
            return IndexSnapshot(store, None, stamp, "the catalog has no model yet: run `whysim index DIR`")
        if store.dim != card.dim:
            return IndexSnapshot(store, card, stamp,
                                 "the index is being rebuilt with another model; try again when it is done")
        return IndexSnapshot(store, card, stamp, cohort=Cohort.of_store(store))
