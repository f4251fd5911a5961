"""Retrieval metrics against hand-computed cases."""
from __future__ import annotations

import numpy as np
import pytest

from whysim.indexer.evaluation.retrieval_metrics import mean_average_precision, ranked_neighbours, retrieval_metrics


def unit(rows: list[list[float]]) -> np.ndarray:
    array = np.asarray(rows, dtype=np.float32)
    return array / np.linalg.norm(array, axis=1, keepdims=True)


def test_hand_computed_four_items() -> None:
    # Neighbours: 0 -> 1,3,2   1 -> 0,3,2   2 -> 3,1,0   3 -> 1,0,2
    vectors = unit([[1, 0], [0.9, 0.1], [0, 1], [0.8, 0.6]])
    assert ranked_neighbours(vectors, 3).tolist() == [[1, 3, 2], [0, 3, 2], [3, 1, 0], [1, 0, 2]]
    metrics = retrieval_metrics(vectors, ["a", "a", "b", "b"], ks=(1, 2))
    assert metrics["p_at_1"] == pytest.approx(0.75)
    assert metrics["recall_at_2"] == pytest.approx(0.75)  # query 3's only relevant item is last
    assert metrics["map_at_10"] == pytest.approx((1 + 1 + 1 + 1 / 3) / 4)


def test_average_precision_normalised_by_relevant_count() -> None:
    # hits at ranks 1 and 3 with 2 relevant items: (1/1 + 2/3) / 2
    assert mean_average_precision(np.array([[1, 0, 1, 0]]), np.array([2])) == pytest.approx(5 / 6)
    # 20 relevant items, only 10 slots: normalise by min(10, 20)
    assert mean_average_precision(np.ones((1, 10), dtype=bool), np.array([20])) == pytest.approx(1.0)
