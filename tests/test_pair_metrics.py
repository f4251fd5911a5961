"""Pair verification metrics against hand-computed cases."""
from __future__ import annotations

import numpy as np
import pytest

from whysim.indexer.evaluation.pair_metrics import accuracy_at, average_ranks, choose_threshold, f1_at, roc_auc
from whysim.indexer.evaluation.verification import verification_metrics


def test_roc_auc_hand_computed() -> None:
    same = np.array([True, True, False, False])
    assert roc_auc(np.array([0.9, 0.8, 0.3, 0.1]), same) == 1.0
    assert roc_auc(np.array([0.1, 0.3, 0.8, 0.9]), same) == 0.0  # higher score must mean "similar"
    # positive 0.9 beats both negatives; positive 0.4 beats 0.3 only: 3 of 4 pairs
    assert roc_auc(np.array([0.9, 0.4, 0.5, 0.3]), same) == pytest.approx(0.75)


def test_roc_auc_ties_count_half() -> None:
    assert roc_auc(np.full(6, 0.7), np.array([1, 0, 1, 0, 1, 0], dtype=bool)) == pytest.approx(0.5)
    # positive 0.5 ties negative 0.5 (1/2), beats 0.2 (1); positive 0.9 beats both (2): 3.5 / 4
    assert roc_auc(np.array([0.9, 0.5, 0.5, 0.2]), np.array([True, True, False, False])) == pytest.approx(0.875)


def test_average_ranks() -> None:
    assert average_ranks(np.array([3.0, 1.0, 3.0, 2.0])).tolist() == [3.5, 1.0, 3.5, 2.0]


def test_accuracy_and_f1_at_threshold() -> None:
    scores = np.array([0.9, 0.6, 0.4, 0.7, 0.2])
    same = np.array([True, True, True, False, False])
    # threshold 0.5: predicted similar = 0.9, 0.6, 0.7 -> TP 2, FP 1, FN 1, TN 1
    assert accuracy_at(scores, same, 0.5) == pytest.approx(3 / 5)
    assert f1_at(scores, same, 0.5) == pytest.approx(2 * 2 / (3 + 3))
    assert accuracy_at(scores, same, 0.6) == pytest.approx(3 / 5)  # >= threshold counts as similar
    assert f1_at(scores, same, 2.0) == 0.0


def test_choose_threshold_maximises_accuracy() -> None:
    scores = np.array([0.9, 0.8, 0.55, 0.5, 0.2, 0.1])
    same = np.array([True, True, True, False, False, False])
    threshold = choose_threshold(scores, same)
    assert threshold == pytest.approx((0.55 + 0.5) / 2)
    assert accuracy_at(scores, same, threshold) == 1.0
    # one negative above a positive: best cut is still between 0.55 and 0.5 (5 of 6 right)
    same_swapped = np.array([True, False, True, False, False, False])
    assert accuracy_at(scores, same_swapped, choose_threshold(scores, same_swapped)) == pytest.approx(5 / 6)
    assert choose_threshold(np.array([0.3, 0.3]), np.array([True, True])) == pytest.approx(0.3)


def test_roc_auc_needs_both_kinds() -> None:
    with pytest.raises(ValueError, match="both"):
        roc_auc(np.array([0.1, 0.2]), np.array([True, True]))


def test_verification_metrics_on_separable_embeddings() -> None:
    vectors = np.array([[1, 0], [0.99, 0.14], [0, 1], [0.14, 0.99]], dtype=np.float32)
    metrics = verification_metrics(vectors, ["a", "a", "b", "b"])
    assert metrics["pair_roc_auc"] == 1.0 and metrics["pair_accuracy"] == 1.0 and metrics["pair_f1"] == 1.0
    assert metrics["pairs"] == 40  # 4 images x 5 positive + 5 negative pairs
    flipped = verification_metrics(vectors, ["a", "b", "a", "b"])
    assert flipped["pair_roc_auc"] < 0.5
