"""Leave-one-out retrieval metrics over labelled embeddings.

Definitions (each a mean over queries; the query itself is never among its results):
- P@k: fraction of the top k results that share the query's label.
- mAP@10: AP over the top 10, sum_i P@i * rel_i / min(10, R), with R the number of other
  items that share the query's label; queries with R = 0 are skipped.
- Recall@k: fraction of queries with at least one relevant item in the top k (the
  metric-learning convention, e.g. Song et al. 2016).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def ranked_neighbours(vectors: np.ndarray, k: int, block: int = 1024) -> np.ndarray:
    """Indices of each row's k most similar other rows by inner product, best first."""
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n = len(vectors)
    k = min(k, n - 1)
    result = np.empty((n, k), dtype=np.int64)
    for start in range(0, n, block):
        sims = vectors[start:start + block] @ vectors.T
        rows = np.arange(sims.shape[0])
        sims[rows, start + rows] = -np.inf  # leave one out
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        order = np.take_along_axis(sims, top, axis=1).argsort(axis=1)[:, ::-1]
        result[start:start + len(rows)] = np.take_along_axis(top, order, axis=1)[:, :k]
    return result


def retrieval_metrics(vectors: np.ndarray, labels: Sequence[object], ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    labels_array = np.asarray([str(label) for label in labels])
    if len(labels_array) != len(vectors):
        raise ValueError(f"{len(vectors)} vectors but {len(labels_array)} labels")
    if len(vectors) < 2:
        raise ValueError("need at least two items for leave-one-out retrieval")
    depth = max(max(ks), 10)
    neighbours = ranked_neighbours(vectors, depth)
    relevant = labels_array[neighbours] == labels_array[:, None]  # (n, depth)
    _, inverse, counts = np.unique(labels_array, return_inverse=True, return_counts=True)
    others = counts[inverse] - 1  # relevant items per query
    metrics: dict[str, float] = {}
    for k in sorted(set(ks) | {1, 10}):
        kk = min(k, relevant.shape[1])
        metrics[f"p_at_{k}"] = float(relevant[:, :kk].mean())
        metrics[f"recall_at_{k}"] = float(relevant[:, :kk].any(axis=1).mean())
    metrics["map_at_10"] = mean_average_precision(relevant[:, :10], others)
    metrics["queries"] = float(len(vectors))
    return metrics


def mean_average_precision(relevant: np.ndarray, relevant_counts: np.ndarray) -> float:
    """mAP over ranked relevance rows (n, k), normalised by min(k, relevant count)."""
    k = relevant.shape[1]
    hits = relevant.astype(np.float64)
    precision_at_i = np.cumsum(hits, axis=1) / np.arange(1, k + 1)
    denominator = np.minimum(k, relevant_counts).astype(np.float64)
    valid = denominator > 0
    ap = (precision_at_i * hits).sum(axis=1)[valid] / denominator[valid]
    return float(ap.mean()) if len(ap) else 0.0
