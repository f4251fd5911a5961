"""Drawing image pairs from a class-per-folder collection: half same-class, half different-class."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from whysim.indexer.scanning import scan_collection


@dataclass(frozen=True)
class LabelledPair:
    query: Path
    hit: Path
    query_label: str
    hit_label: str

    @property
    def same_class(self) -> bool:
        return self.query_label == self.hit_label


def labelled_files(root: Path) -> dict[str, list[Path]]:
    """Images grouped by their parent folder's name (files directly under `root` have no class)."""
    groups: dict[str, list[Path]] = defaultdict(list)
    for scanned in scan_collection(root):
        if scanned.label is not None:
            groups[scanned.label].append(root / scanned.path)
    return dict(groups)


def draw_pairs(groups: dict[str, list[Path]], count: int, seed: int) -> list[LabelledPair]:
    """`count` distinct-file pairs, alternating same-class and different-class, reproducible by `seed`.

    The query is drawn uniformly over all images, so large classes weigh as they do in the
    collection; its partner is drawn uniformly from the same class or from all other classes.
    """
    if count < 1:
        raise ValueError("need at least one pair")
    labels = sorted(groups)
    if len(labels) < 2:
        raise ValueError(f"need at least two class folders with images, found {len(labels)}")
    pairable = [label for label in labels if len(groups[label]) >= 2]
    if not pairable:
        raise ValueError("need a class folder with at least two images for same-class pairs")
    rng = np.random.default_rng(seed)
    everything = [(label, path) for label in labels for path in groups[label]]
    same_pool = [(label, path) for label, path in everything if label in pairable]
    pairs = []
    for index in range(count):
        same = index % 2 == 0
        pool = same_pool if same else everything
        query_label, query = pool[rng.integers(len(pool))]
        if same:
            candidates = [(query_label, p) for p in groups[query_label] if p != query]
        else:
            candidates = [(label, p) for label, p in everything if label != query_label]
        hit_label, hit = candidates[rng.integers(len(candidates))]
        pairs.append(LabelledPair(query, hit, query_label, hit_label))
    return pairs
