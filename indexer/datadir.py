"""The data directory: every piece of whysim state (catalog, vectors, thumbnails, caches) lives here."""
from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

DEFAULT_DATA_DIR = "whysim-data"
DATA_DIR_ENV = "WHYSIM_DATA_DIR"
CATALOG_URL_ENV = "WHYSIM_CATALOG_URL"
VECTOR_STORE_ENV = "WHYSIM_VECTOR_STORE"  # --vector-store (indexer/vector_stores/choice.py)


class DataDirLocked(RuntimeError):
    """Another process is writing to the same data directory (or, for a shared catalog, the same catalog)."""


@dataclass(frozen=True)
class DataDir:
    """Paths inside one data directory. Creating the object touches nothing on disk."""

    root: Path
    catalog_url_override: str | None = None

    @property
    def catalog_path(self) -> Path:
        """The embedded SQLite catalog's file (unused when a catalog URL overrides it)."""
        return self.root / "catalog.sqlite3"

    @property
    def catalog_url(self) -> str:
        if self.catalog_url_override:
            return self.catalog_url_override
        return f"sqlite:///{self.catalog_path}"

    def has_catalog(self) -> bool:
        """Whether there is a catalog to read: a catalog URL was given, or the SQLite file exists.
        False means nothing was indexed here yet (and opening would create an empty catalog)."""
        return self.catalog_url_override is not None or self.catalog_path.exists()

    @property
    def vectors_path(self) -> Path:
        return self.root / "vectors.faiss"

    @property
    def thumbnails_dir(self) -> Path:
        return self.root / "thumbnails"

    @property
    def uploads_dir(self) -> Path:
        """Recent uploaded queries (search/serving/upload_store.py), so links to them survive a restart."""
        return self.root / "uploads"

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    @property
    def runtime_cache_dir(self) -> Path:
        """Models converted for OpenVINO / ONNX Runtime (whysim.indexer.runtime.conversion)."""
        return self.cache_dir / "runtimes"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    def ensure(self) -> DataDir:
        self.root.mkdir(parents=True, exist_ok=True)
        return self

    def disk_bytes(self) -> int:
        """Total size of the files under the data directory."""
        if not self.root.exists():
            return 0
        return sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file() and not p.is_symlink())

    @contextmanager
    def writer_lock(self) -> Iterator[None]:
        """Exclusive lock for writers, so two indexers never interleave their saves: a file lock
        in the data directory, plus the catalog's own lock when it is shared (PostgreSQL)."""
        from whysim.indexer.catalog.locking import CatalogLocked, catalog_writer_lock

        self.ensure()
        with open(self.root / "writer.lock", "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise DataDirLocked(
                    f"another whysim process is writing to {self.root}; wait for it to finish"
                ) from exc
            try:
                handle.seek(0)
                handle.truncate()
                handle.write(str(os.getpid()))
                handle.flush()
                try:
                    with catalog_writer_lock(self.catalog_url):
                        yield
                except CatalogLocked as exc:
                    raise DataDirLocked(str(exc)) from exc
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def resolve_data_dir(path: str | os.PathLike[str] | None = None, catalog_url: str | None = None) -> DataDir:
    """Data directory from an explicit value, else $WHYSIM_DATA_DIR, else ./whysim-data."""
    chosen = path or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR
    url = catalog_url or os.environ.get(CATALOG_URL_ENV) or None
    return DataDir(Path(chosen).expanduser().absolute(), url)
