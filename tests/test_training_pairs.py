"""The paper's pair protocol and class-balanced batches."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from whysim.indexer.training.pairs import balanced_pairs, class_balanced_batches, epoch_rng

LABELS = np.array([0] * 5 + [1] * 3 + [2] * 4)


def test_one_positive_and_one_negative_per_image() -> None:
    pairs = balanced_pairs(LABELS, epoch_rng(0, 1))
    assert len(pairs) == 2 * len(LABELS)
    assert Counter(pairs.left[pairs.same].tolist()) == Counter(range(len(LABELS)))
    assert Counter(pairs.left[~pairs.same].tolist()) == Counter(range(len(LABELS)))
    positive_right = pairs.right[pairs.same]
    assert (LABELS[pairs.left[pairs.same]] == LABELS[positive_right]).all()
    assert (pairs.left[pairs.same] != positive_right).all()  # never paired with itself
    assert (LABELS[pairs.left[~pairs.same]] != LABELS[pairs.right[~pairs.same]]).all()


def test_redrawn_every_epoch_and_reproducible() -> None:
    first, again, second = (balanced_pairs(LABELS, epoch_rng(seed, epoch))
                            for seed, epoch in ((7, 1), (7, 1), (7, 2)))
    assert np.array_equal(first.right, again.right)
    assert not np.array_equal(first.right, second.right)
    assert not np.array_equal(first.right, balanced_pairs(LABELS, epoch_rng(8, 1)).right)


def test_positives_cover_the_class_uniformly() -> None:
    labels = np.array([0] * 4 + [1] * 4)
    partners = Counter()
    for epoch in range(600):
        pairs = balanced_pairs(labels, epoch_rng(0, epoch))
        anchor_zero = pairs.same & (pairs.left == 0)
        partners.update(pairs.right[anchor_zero].tolist())
    assert set(partners) == {1, 2, 3}
    assert min(partners.values()) > 150  # ~200 each


def test_singleton_class_gets_no_positive() -> None:
    pairs = balanced_pairs(np.array([0, 0, 1]), epoch_rng(0, 0), per_image=2)
    assert 2 not in pairs.left[pairs.same]
    assert (pairs.left[~pairs.same] == 2).sum() == 2


@pytest.mark.parametrize("seed", range(5))
def test_class_balanced_batches(seed: int) -> None:
    labels = np.repeat(np.arange(6), 8)
    batches = class_balanced_batches(labels, classes_per_batch=3, images_per_class=4, rng=epoch_rng(seed, 0))
    assert len(batches) == 48 // 12
    for batch in batches:
        counts = Counter(labels[batch].tolist())
        assert len(counts) == 3 and set(counts.values()) == {4}
    seen = np.concatenate(batches)
    assert len(set(seen.tolist())) == len(seen)  # one pass: no item repeated before all are dealt
