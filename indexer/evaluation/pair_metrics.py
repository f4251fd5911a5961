"""Pair verification metrics on continuous similarity scores (higher score = more similar).

A pair is predicted "similar" when its score is >= the threshold. ROC-AUC is computed
from ranks (the Mann-Whitney statistic): the probability that a random positive pair
scores above a random negative one, ties counting one half. It uses the scores
themselves, never thresholded predictions.
"""
from __future__ import annotations

import numpy as np


def _check(scores: np.ndarray, same: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    same = np.asarray(same, dtype=bool).reshape(-1)
    if scores.shape != same.shape:
        raise ValueError(f"{len(scores)} scores but {len(same)} labels")
    if not np.isfinite(scores).all():
        raise ValueError("scores must be finite")
    return scores, same


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing the mean of their ranks."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_values)) + 1]
    ends = np.r_[starts[1:], len(values)]
    mean_rank = (starts + ends + 1) / 2.0  # mean of start+1 .. end
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def roc_auc(scores: np.ndarray, same: np.ndarray) -> float:
    scores, same = _check(scores, same)
    positives, negatives = int(same.sum()), int((~same).sum())
    if positives == 0 or negatives == 0:
        raise ValueError("ROC-AUC needs both similar and dissimilar pairs")
    rank_sum = average_ranks(scores)[same].sum()
    return float((rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives))


def accuracy_at(scores: np.ndarray, same: np.ndarray, threshold: float) -> float:
    scores, same = _check(scores, same)
    return float(((scores >= threshold) == same).mean())


def f1_at(scores: np.ndarray, same: np.ndarray, threshold: float) -> float:
    """F1 of the "similar" class; 0 when nothing is predicted or nothing is similar."""
    scores, same = _check(scores, same)
    predicted = scores >= threshold
    true_positive = int((predicted & same).sum())
    denominator = int(predicted.sum()) + int(same.sum())
    return 2.0 * true_positive / denominator if denominator else 0.0


def choose_threshold(scores: np.ndarray, same: np.ndarray) -> float:
    """The threshold with the best accuracy on these pairs: the midpoint between the two
    distinct scores where the cut falls (the lowest such cut when several tie)."""
    scores, same = _check(scores, same)
    if not len(scores):
        raise ValueError("no pairs to choose a threshold on")
    distinct = np.unique(scores)  # ascending
    # cut k predicts "similar" for scores >= distinct[k]; k = len(distinct): nothing similar
    index = np.searchsorted(distinct, scores)
    positives_at = np.bincount(index[same], minlength=len(distinct))
    negatives_at = np.bincount(index[~same], minlength=len(distinct))
    # correct(k) = positives with score >= distinct[k] + negatives below it
    positives_above = np.r_[np.cumsum(positives_at[::-1])[::-1], 0]
    negatives_below = np.r_[0, np.cumsum(negatives_at)]
    best = int(np.argmax(positives_above + negatives_below))
    if best == 0:
        return float(distinct[0])
    if best == len(distinct):
        return float(np.nextafter(distinct[-1], np.inf))
    return float((distinct[best - 1] + distinct[best]) / 2.0)
