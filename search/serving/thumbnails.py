"""Thumbnails made on first request and kept under the data directory.

A thumbnail's file name hashes the image id, its catalogued digest, the file's current size
and mtime, and the side, so a changed file gets a new thumbnail instead of a stale one.
"""
from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from whysim.indexer.catalog.repository import ImageInfo
from whysim.indexer.imaging import ImageRejected, decode_image
from whysim.search.serving.pictures import ImageUnavailable, collection_file

JPEG_QUALITY = 85
DEFAULT_THUMBNAIL_SIDE = 256  # longest side, px


@dataclass(frozen=True)
class ServedFile:
    path: Path
    etag: str
    matches_catalog: bool  # the file is the one that was indexed (size and mtime agree)


def served_file(info: ImageInfo) -> ServedFile:
    """The image's own file, only from inside its collection; ImageUnavailable otherwise."""
    path = collection_file(info)
    if path is None:
        raise ImageUnavailable(f"the file of image {info.id} is missing or outside its collection")
    stat = path.stat()
    etag = hashlib.sha256(f"{info.id}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:24]
    return ServedFile(path, etag, (stat.st_size, stat.st_mtime_ns) == (info.size_bytes, info.mtime_ns))


class Thumbnails:
    def __init__(self, directory: Path, side: int = DEFAULT_THUMBNAIL_SIDE) -> None:
        self.directory = directory
        self.side = side

    def get(self, info: ImageInfo) -> ServedFile:
        source = served_file(info)
        key = hashlib.sha256(f"{info.sha256}:{source.etag}:{self.side}".encode()).hexdigest()[:24]
        target = self.directory / f"{info.id}-{key}.jpg"
        if not target.is_file():
            self._make(info, source.path, target)
        return ServedFile(target, key, source.matches_catalog)

    def _make(self, info: ImageInfo, source: Path, target: Path) -> None:
        try:
            image = decode_image(source.read_bytes(), draft_size=self.side).image
        except ImageRejected as exc:
            raise ImageUnavailable(f"image {info.id} cannot be shown: {exc}") from exc
        except OSError as exc:
            raise ImageUnavailable(f"cannot read the file of image {info.id}: {exc.strerror or exc}") from exc
        image.thumbnail((self.side, self.side), Image.Resampling.BILINEAR)
        self.directory.mkdir(parents=True, exist_ok=True)
        # Two requests may make the same thumbnail at once: each writes its own file and
        # the rename makes one of them win whole.
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            image.save(tmp, "JPEG", quality=JPEG_QUALITY)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
