"""Verdicts judged where users meet them: on the top-k hits of every leave-one-out query.

Search never shows random pairs. It shows the top of a ranking, where every candidate looks like
the query, so a verdict rule is judged on those hits: for each labelled image as the query, its k
most similar other images, each a true match when it has the query's label. Precision, recall and
F1 are those of "similar" over all these hits; `best_f1` is the best single cut on the same hits,
an oracle to compare a rule's own cut with.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from whysim.indexer.evaluation.retrieval_metrics import ranked_neighbours
from whysim.indexer.evaluation.verification import label_codes

TOPK_VERDICT_K = 10


@dataclass(frozen=True)
class TopKHits:
    """Every (query, hit) pair of the leave-one-out top-k lists, flattened in rank order per query."""

    queries: np.ndarray  # (m,) row of the query
    hits: np.ndarray  # (m,) row of the hit
    ranks: np.ndarray  # (m,) 0-based rank of the hit in its query's list
    similarities: np.ndarray  # (m,) cosine (inner product of the vectors)
    same: np.ndarray  # (m,) bool: the hit has the query's label

    def __len__(self) -> int:
        return len(self.hits)


def leave_one_out_hits(vectors: np.ndarray, labels: Sequence[object], k: int = TOPK_VERDICT_K) -> TopKHits:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    neighbours = ranked_neighbours(vectors, k)
    count, width = neighbours.shape
    queries = np.repeat(np.arange(count), width)
    hits = neighbours.reshape(-1)
    codes = label_codes(labels)
    similarities = np.einsum("ij,ij->i", vectors[queries], vectors[hits]).astype(np.float64)
    return TopKHits(queries, hits, np.tile(np.arange(width), count), similarities, codes[queries] == codes[hits])


def precision_recall_f1(predicted: np.ndarray, same: np.ndarray) -> tuple[float, float, float]:
    """Of the "similar" class; a ratio with nothing to divide is 0."""
    predicted = np.asarray(predicted, dtype=bool)
    same = np.asarray(same, dtype=bool)
    true_positive = int((predicted & same).sum())
    precision = true_positive / int(predicted.sum()) if predicted.any() else 0.0
    recall = true_positive / int(same.sum()) if same.any() else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def best_f1(scores: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """(cut, F1) of the cut `scores >= cut` with the best F1 on these hits (the highest such cut
    when several tie); every distinct score is tried as a cut."""
    scores = np.asarray(scores, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    if not same.any():
        return float(scores.max(initial=0.0)) + 1.0, 0.0
    order = np.argsort(-scores, kind="mergesort")
    ranked, ranked_same = scores[order], same[order]
    true_positives = np.cumsum(ranked_same)
    predicted = np.arange(1, len(ranked) + 1)
    f1 = 2.0 * true_positives / (predicted + same.sum())
    distinct = np.r_[ranked[1:] < ranked[:-1], True]  # a cut only between different scores
    best = int(np.argmax(np.where(distinct, f1, -1.0)))
    return float(ranked[best]), float(f1[best])


