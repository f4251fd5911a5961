"""Uploaded queries kept on disk as well, under the data directory, so a shared link or the back
button (`?q=<digest>`) still works after the server restarts or the memory cache let the upload go.

The uploaded bytes are written once, under their SHA-256 digest, to `uploads/` in the data
directory (DataDir.uploads_dir) (atomically: a temporary file renamed into place). The folder holds as many uploads as
the memory cache (least recently used removed first; a use touches the file), each within the
upload size limit the server already enforces. A query that is on disk but not in memory is
decoded and embedded again by the model now served, so a model change cannot serve a stale vector.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from whysim.indexer.imaging import ImageRejected
from whysim.search.serving.engine import SearchEngine, UploadedQuery
from whysim.search.serving.uploads import DEFAULT_UPLOAD_CACHE_SIZE, DIGEST_PATTERN, UploadCache

logger = logging.getLogger(__name__)


class UploadFiles:
    """The bytes of recent uploads, one file per digest, the least recently used removed first."""

    def __init__(self, folder: Path, capacity: int = DEFAULT_UPLOAD_CACHE_SIZE) -> None:
        if capacity < 1:
            raise ValueError("upload store capacity must be at least 1")
        self.folder = folder
        self.capacity = capacity

    def _path(self, digest: str) -> Path:
        if not DIGEST_PATTERN.match(digest):
            raise ValueError(f"not an upload digest: {digest!r}")
        return self.folder / digest.lower()

    def save(self, digest: str, data: bytes) -> None:
        """Keeps the bytes (a failure to write is logged: the upload is then held in memory only)."""
        path = self._path(digest)
        try:
            if path.exists():
                os.utime(path)
                return
            self.folder.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            temporary.write_bytes(data)
            os.replace(temporary, path)
            self._evict()
        except OSError as exc:
            logger.warning("cannot keep upload %s on disk: %s", digest[:12], exc)

    def load(self, digest: str) -> bytes | None:
        """The bytes of a kept upload (and marks it used), or None."""
        path = self._path(digest)
        try:
            data = path.read_bytes()
            os.utime(path)
        except OSError:
            return None
        return data

    def digests(self) -> list[str]:
        """Kept uploads, least recently used first."""
        try:
            entries = [entry for entry in os.scandir(self.folder)
                       if entry.is_file() and DIGEST_PATTERN.match(entry.name)]
        except OSError:
            return []
        return [entry.name for entry in sorted(entries, key=lambda entry: entry.stat().st_mtime_ns)]

    def _evict(self) -> None:
        kept = self.digests()
        for digest in kept[:max(0, len(kept) - self.capacity)]:
            (self.folder / digest).unlink(missing_ok=True)


class PersistentUploads(UploadCache):
    """The memory cache of uploaded queries, backed by UploadFiles: a query found only on disk is
    embedded again (by the model served now) and held in memory from then on."""

    def __init__(self, engine: SearchEngine, files: UploadFiles, capacity: int = DEFAULT_UPLOAD_CACHE_SIZE) -> None:
        super().__init__(capacity)
        self.engine = engine
        self.files = files

    def keep(self, uploaded: UploadedQuery, data: bytes) -> None:
        """Holds a new upload in memory and on disk."""
        self.add(uploaded)
        self.files.save(uploaded.digest, data)

    def get(self, digest: str, model_key: str) -> UploadedQuery:
        if self.peek(digest) is None and DIGEST_PATTERN.match(digest):
            data = self.files.load(digest)
            if data is not None:
                try:
                    self.add(self.engine.upload(data))
                except ImageRejected as exc:  # e.g. over a lower pixel limit since: as if never kept
                    logger.warning("kept upload %s is refused now: %s", digest[:12], exc)
        return super().get(digest, model_key)
