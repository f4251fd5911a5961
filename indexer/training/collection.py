"""A labelled (class-per-folder) image collection: relative paths, class labels and content digests."""
from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from whysim.indexer.scanning import scan_collection

HASH_BLOCK = 1 << 20


@dataclass(frozen=True)
class LabelledImage:
    path: str  # POSIX path relative to the collection root
    label: str  # the parent folder's name
    sha256: str


@dataclass(frozen=True)
class LabelledCollection:
    root: Path
    images: tuple[LabelledImage, ...]
    unlabelled: int = 0  # image files directly under the root, which have no class

    def __len__(self) -> int:
        return len(self.images)

    @property
    def labels(self) -> list[str]:
        return [image.label for image in self.images]

    @property
    def classes(self) -> list[str]:
        return sorted(set(self.labels))

    def digest(self) -> str:
        """Identifies the labelled content: same files, same classes, same bytes -> same digest."""
        digest = hashlib.sha256()
        for image in sorted(self.images, key=lambda item: item.path):
            digest.update(f"{image.path}\t{image.label}\t{image.sha256}\n".encode())
        return digest.hexdigest()

    def subset(self, paths: Iterable[str]) -> LabelledCollection:
        wanted = set(paths)
        return LabelledCollection(self.root, tuple(i for i in self.images if i.path in wanted), 0)

    def distinct(self) -> tuple[LabelledCollection, int]:
        """One image per content: byte-identical copies collapse into the first path; copies filed
        under different classes are dropped (their label is ambiguous). Returns the collection
        and how many files were removed."""
        by_sha: dict[str, list[LabelledImage]] = {}
        for image in self.images:
            by_sha.setdefault(image.sha256, []).append(image)
        kept = [group[0] for group in by_sha.values() if len({image.label for image in group}) == 1]
        kept.sort(key=lambda image: image.path)
        return LabelledCollection(self.root, tuple(kept), self.unlabelled), len(self.images) - len(kept)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def scan_labelled(root: Path, progress: bool = True) -> LabelledCollection:
    """Every image file under `root` whose parent folder names its class, hashed."""
    if not root.is_dir():
        raise FileNotFoundError(f"not a directory: {root}")
    root = root.resolve()
    files = list(scan_collection(root))
    images: list[LabelledImage] = []
    unlabelled = 0
    for file in tqdm(files, desc="hashing", unit="file", disable=not progress, dynamic_ncols=True):
        if file.label is None:
            unlabelled += 1
            continue
        try:
            sha = file_sha256(root / file.path)
        except OSError as exc:
            tqdm.write(f"skipping {file.path}: cannot read file: {exc.strerror or exc}")
            continue
        images.append(LabelledImage(file.path, file.label, sha))
    return LabelledCollection(root, tuple(images), unlabelled)
