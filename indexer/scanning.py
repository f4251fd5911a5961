"""Finding image files under a collection root without leaving it."""
from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from whysim.indexer.imaging import IMAGE_EXTENSIONS


@dataclass(frozen=True)
class ScannedFile:
    path: str  # POSIX path relative to the collection root
    size: int
    mtime_ns: int

    @property
    def label(self) -> str | None:
        """The parent folder's name: the class in a class-per-folder collection."""
        parent = PurePosixPath(self.path).parent
        return None if str(parent) == "." else parent.name


def _inside(root_real: str, candidate: str) -> bool:
    real = os.path.realpath(candidate)
    return real == root_real or real.startswith(root_real + os.sep)


def scan_collection(root: Path, extensions: frozenset[str] = IMAGE_EXTENSIONS) -> Iterator[ScannedFile]:
    """Yields image files under `root`, recursively, in a stable order.

    Symlinks are followed only when they resolve inside `root` (a link to a file elsewhere
    would let a collection expose arbitrary files); hidden files and folders are skipped.
    """
    root_real = os.path.realpath(root)
    seen_dirs: set[str] = set()
    stack = [root_real]
    while stack:
        directory = stack.pop()
        real_dir = os.path.realpath(directory)
        if real_dir in seen_dirs:  # a symlink loop inside the root
            continue
        seen_dirs.add(real_dir)
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            continue
        subdirs = []
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                if entry.is_symlink() and not _inside(root_real, entry.path):
                    continue
                if entry.is_dir():
                    subdirs.append(entry.path)
                    continue
                if not entry.is_file() or Path(entry.name).suffix.lower() not in extensions:
                    continue
                stat = entry.stat()
            except OSError:
                continue
            relative = os.path.relpath(entry.path, root_real)
            yield ScannedFile(PurePosixPath(Path(relative)).as_posix(), stat.st_size, stat.st_mtime_ns)
        stack.extend(reversed(subdirs))
