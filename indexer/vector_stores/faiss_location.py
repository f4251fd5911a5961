"""The default location: one FAISS file in the data directory, replaced by atomic rename."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from whysim.indexer.index_kinds import INDEX_KINDS
from whysim.indexer.vectors import VectorStore, remove_stale_temp_files


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


class FaissLocation:
    """Saves go to a temporary file and are renamed over the old one, so a changed (inode,
    size, mtime) stamp always means a complete new index."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.description = str(path)
        self.kinds = INDEX_KINDS

    def exists(self) -> bool:
        return self.path.exists()

    def load(self) -> VectorStore:
        return VectorStore.load(self.path)

    def empty(self, dim: int, kind: str = "flat") -> VectorStore:
        return VectorStore.empty(dim, kind)

    def save(self, store: VectorStore) -> None:  # type: ignore[override]
        store.save(self.path)

    def stamp(self) -> FileStamp | None:
        return FileStamp.of(self.path)

    def clean_up(self) -> None:
        remove_stale_temp_files(self.path)

    def close(self) -> None:
        pass
