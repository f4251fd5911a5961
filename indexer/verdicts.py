"""Verdicts that mean the same on every collection: cosine similarity judged against the collection.

A raw cosine cut does not travel: ImageNet features put two different bedrooms at 0.6 and two
daisies at 0.5, so a cut fitted on one collection calls everything "similar" on the other.
whysim therefore judges a pair by how unusual its similarity is *for these two images in this
collection* (symmetric score normalisation, "S-norm", from speaker verification):

    z(a, b) = ((s - mu_a) / sigma_a + (s - mu_b) / sigma_b) / 2

where mu_x and sigma_x are the mean and standard deviation of x's similarities to a fixed
cohort: a seeded sample of the collection's own vectors. One cut on z (DEFAULT_CUT, fitted on
flowers and rooms together, docs/explanations.md "Verdicts") holds across collections without labels; with
labels, `whysim calibrate` fits the cut on the collection's own pairs (a `fitted` rule).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any

import numpy as np

from whysim.indexer.sampling import sample_rows
from whysim.indexer.vector_stores.protocol import VectorStore

# Cohort of at most this many vectors: mu and sigma of a 1,000-sample are within a few
# thousandths of the whole collection's, and cost one (k, 1000) product per request.
COHORT_SIZE = 1000
COHORT_SEED = 0
# Similarities above this are an image against itself (or its byte copy) in the cohort.
SELF_SIMILARITY = 0.9999
DEFAULT_CUT = 1.05
MIN_SIGMA = 1e-6

DEFAULT_RULE_KIND = "default"
FITTED_RULE_KIND = "fitted"
RULE_SETTING = "verdict_rule"


@dataclass(frozen=True)
class VerdictRule:
    """How a normalised score becomes "similar" / "dissimilar"."""

    kind: str = DEFAULT_RULE_KIND  # "default" (label-free) or "fitted" (calibrated on labelled pairs)
    cut: float = DEFAULT_CUT
    pairs: int = 0  # labelled pairs it was fitted on (fitted rules)
    balanced_accuracy: float | None = None  # on those pairs
    source: str | None = None  # the labelled folder it was fitted on
    model: str | None = None  # ModelCard.key() of the model it was fitted for

    @property
    def fitted(self) -> bool:
        return self.kind == FITTED_RULE_KIND

    def describe(self) -> str:
        if self.fitted:
            accuracy = f", balanced accuracy {self.balanced_accuracy:.3f}" if self.balanced_accuracy is not None else ""
            return (f"cut {self.cut:.3f} on the collection-normalised score, fitted on {self.pairs:,} labelled "
                    f"pairs of {self.source}{accuracy}")
        return (f"default cut {self.cut:.3f} on the collection-normalised score "
                f"(label-free; fit one with `whysim calibrate DIR`)")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "fitted": self.fitted, "description": self.describe()}

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> VerdictRule:
        if not text:
            return cls()
        return cls(**json.loads(text))


def cohort_rows(count: int, size: int = COHORT_SIZE, seed: int = COHORT_SEED) -> np.ndarray:
    """Positions (sorted) of the cohort among `count` vectors: all of them, or a seeded sample."""
    return sample_rows(count, size, seed)


@dataclass(frozen=True, eq=False)
class Cohort:
    vectors: np.ndarray  # (c, d) float32, the collection's own (final, searched) vectors

    @classmethod
    def sample(cls, vectors: np.ndarray, size: int = COHORT_SIZE, seed: int = COHORT_SEED) -> Cohort:
        matrix = np.asarray(vectors, dtype=np.float32)
        return cls(np.ascontiguousarray(matrix[cohort_rows(len(matrix), size, seed)]))

    @classmethod
    def of_store(cls, store: VectorStore, size: int = COHORT_SIZE, seed: int = COHORT_SEED) -> Cohort:
        """The cohort of an index: a seeded sample chosen among its ids in id order, so it depends
        on which images are indexed, not on the order they were added in."""
        ids = np.sort(store.ids())
        chosen = ids[cohort_rows(len(ids), size, seed)]
        vectors = [store.reconstruct(int(i)) for i in chosen]
        return cls(np.stack(vectors).astype(np.float32) if vectors else np.empty((0, store.dim), dtype=np.float32))

    def __len__(self) -> int:
        return len(self.vectors)

    @cached_property
    def mean_vector(self) -> np.ndarray | None:
        """The collection's mean final vector, estimated on the cohort (None when it is empty).
        Cached: a served index keeps one cohort per snapshot and every explanation asks for it."""
        return self.vectors.astype(np.float64).mean(axis=0) if len(self.vectors) else None

    def statistics(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mean, standard deviation) of each vector's similarities to the cohort, leaving itself
        out. (A median and MAD, robust to the true matches among the cohort, were tried: their best
        single cut fell further short on one of the two shared sets; docs/explanations.md "Verdicts".)"""
        matrix = np.asarray(vectors, dtype=np.float32).reshape(-1, self.vectors.shape[1])
        sims = (matrix @ self.vectors.T).astype(np.float64)
        others = sims < SELF_SIMILARITY
        counts = others.sum(axis=1)
        safe = np.maximum(counts, 1)
        mean = np.where(others, sims, 0.0).sum(axis=1) / safe
        variance = np.where(others, (sims - mean[:, None]) ** 2, 0.0).sum(axis=1) / safe
        # With fewer than two other cohort members nothing can be unusual: z stays near 0.
        return np.where(counts > 0, mean, 1.0), np.maximum(np.where(counts > 1, np.sqrt(variance), 1.0), MIN_SIGMA)


def normalised_scores(similarities: np.ndarray, left: tuple[np.ndarray, np.ndarray],
                      right: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """S-norm of cosine similarities, given (mu, sigma) of each pair's two sides."""
    s = np.asarray(similarities, dtype=np.float64)
    return 0.5 * ((s - left[0]) / left[1] + (s - right[0]) / right[1])


@dataclass(frozen=True)
class Verdict:
    similar: bool
    score: float  # the normalised score the cut applies to
    similarity: float  # the raw cosine


class VerdictJudge:
    """A cohort and a rule: judges pairs of (final) vectors."""

    def __init__(self, cohort: Cohort, rule: VerdictRule) -> None:
        self.cohort = cohort
        self.rule = rule

    def scores(self, left: np.ndarray, right: np.ndarray, similarities: np.ndarray) -> np.ndarray:
        return normalised_scores(similarities, self.cohort.statistics(left), self.cohort.statistics(right))

    def judge(self, left: np.ndarray, right: np.ndarray, similarities: np.ndarray) -> list[Verdict]:
        """Verdicts for pairs (left_i, right_i) with cosine similarities_i; left may be one vector."""
        right = np.asarray(right, dtype=np.float32).reshape(len(np.atleast_1d(similarities)), -1)
        left = np.asarray(left, dtype=np.float32).reshape(-1, right.shape[1])
        if len(left) == 1 and len(right) > 1:
            left = np.repeat(left, len(right), axis=0)
        sims = np.atleast_1d(np.asarray(similarities, dtype=np.float64))
        scores = self.scores(left, right, sims)
        return [Verdict(bool(score >= self.rule.cut), float(score), float(sim)) for score, sim in zip(scores, sims)]


def balanced_accuracy(scores: np.ndarray, same: np.ndarray, cut: float) -> float:
    """Mean of the true-positive and true-negative rates of the cut `scores >= cut`."""
    scores = np.asarray(scores, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    if same.all() or not same.any():
        raise ValueError("balanced accuracy needs both similar and dissimilar pairs")
    predicted = scores >= cut
    return float(0.5 * (predicted[same].mean() + (~predicted[~same]).mean()))


def best_cut(scores: np.ndarray, same: np.ndarray) -> tuple[float, float]:
    """(cut, balanced accuracy) of the cut with the best balanced accuracy on these pairs."""
    scores = np.asarray(scores, dtype=np.float64)
    same = np.asarray(same, dtype=bool)
    if same.all() or not same.any():
        raise ValueError("fitting a cut needs both similar and dissimilar pairs")
    order = np.argsort(-scores, kind="mergesort")
    ranked, ranked_same = scores[order], same[order]
    positives, negatives = same.sum(), (~same).sum()
    # cutting just below position i predicts "similar" for ranked[:i + 1]
    tpr = np.cumsum(ranked_same) / positives
    fpr = np.cumsum(~ranked_same) / negatives
    distinct = np.r_[ranked[1:] < ranked[:-1], True]  # only cut between different scores
    accuracy = np.where(distinct, 0.5 * (tpr + 1.0 - fpr), -1.0)
    best = int(np.argmax(accuracy))
    if best + 1 == len(ranked):
        cut = float(ranked[best])
    else:  # halfway to the next lower score, strictly above it
        cut = max(0.5 * (float(ranked[best]) + float(ranked[best + 1])), float(np.nextafter(ranked[best + 1], np.inf)))
    # predicting nothing "similar" scores exactly 0.5 and never beats a real cut here
    return float(cut), float(accuracy[best])
