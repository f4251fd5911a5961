"""Which images meet which: the paper's pair protocol and class-balanced batches.

Labels are integer class codes (one per image). Everything takes a numpy Generator, so
a seed and an epoch number fix the draw and every epoch gets a fresh one.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Pairs:
    left: np.ndarray  # (n,) int64 item indices
    right: np.ndarray  # (n,) int64
    same: np.ndarray  # (n,) bool: same class

    def __len__(self) -> int:
        return len(self.left)

    def shuffled(self, rng: np.random.Generator) -> Pairs:
        order = rng.permutation(len(self))
        return Pairs(self.left[order], self.right[order], self.same[order])


def epoch_rng(seed: int, epoch: int) -> np.random.Generator:
    return np.random.default_rng([seed, epoch])


def balanced_pairs(labels: np.ndarray, rng: np.random.Generator, per_image: int = 1) -> Pairs:
    """The paper's protocol: for every image, `per_image` positive pairs (another image of its
    class) and `per_image` negative pairs (an image of another class), drawn uniformly.
    An image alone in its class gets no positive; with a single class there are no negatives."""
    labels = np.asarray(labels)
    n = len(labels)
    everyone = np.arange(n)
    left, right, same = [], [], []
    for label in np.unique(labels):
        members = everyone[labels == label]
        others = everyone[labels != label]
        m = len(members)
        for _ in range(per_image):
            if m > 1:
                # offset 1..m-1 from the anchor's own position: uniform over the other members
                offsets = rng.integers(1, m, size=m)
                left.append(members)
                right.append(members[(np.arange(m) + offsets) % m])
                same.append(np.ones(m, dtype=bool))
            if len(others):
                left.append(members)
                right.append(others[rng.integers(0, len(others), size=m)])
                same.append(np.zeros(m, dtype=bool))
    if not left:
        empty = np.empty(0, dtype=np.int64)
        return Pairs(empty, empty, np.empty(0, dtype=bool))
    return Pairs(np.concatenate(left).astype(np.int64), np.concatenate(right).astype(np.int64),
                 np.concatenate(same))


def class_balanced_batches(labels: np.ndarray, classes_per_batch: int, images_per_class: int,
                           rng: np.random.Generator) -> list[np.ndarray]:
    """P classes x K images per batch (P-K sampling), about one pass over the items per epoch.

    Each class deals its items from a shuffled deck and the classes with the most undealt
    items go first, so items are seen about once per epoch; a class whose deck runs out
    is reshuffled (a class with fewer than K items repeats some within a batch, with
    different augmentations). Only classes with at least two items take part: a batch loss
    needs positives.
    """
    labels = np.asarray(labels)
    everyone = np.arange(len(labels))
    decks = {int(label): everyone[labels == label] for label in np.unique(labels)}
    decks = {label: members for label, members in decks.items() if len(members) > 1}
    if len(decks) < 2:
        raise ValueError("class-balanced batches need at least two classes with two images each")
    usable = sum(len(members) for members in decks.values())
    per_batch_classes = min(classes_per_batch, len(decks))
    batch_count = max(1, usable // (per_batch_classes * images_per_class))
    positions = {label: 0 for label in decks}
    order = {label: rng.permutation(members) for label, members in decks.items()}
    class_ids = sorted(decks)
    batches = []
    for _ in range(batch_count):
        # the classes with the most undealt items, ties broken at random
        undealt = np.array([len(order[label]) - positions[label] for label in class_ids], dtype=np.float64)
        priority = undealt + rng.random(len(class_ids))
        chosen = [class_ids[i] for i in np.argsort(-priority)[:per_batch_classes]]
        batch = []
        for label in chosen:
            for _ in range(images_per_class):
                if positions[label] == len(order[label]):
                    order[label], positions[label] = rng.permutation(decks[label]), 0
                batch.append(order[label][positions[label]])
                positions[label] += 1
        batches.append(np.asarray(batch, dtype=np.int64))
    return batches
