"""Verdicts that mean the same on every collection, judged where users meet them: at the top of a ranking.

A raw cosine cut does not travel: ImageNet features put two different bedrooms at 0.6 and two
daisies at 0.5. And search never shows random pairs: it shows the top of a ranking, where every
candidate looks like the query. So whysim judges a pair by how its similarity stands against the
collection, and what "similar" asks for depends on the kind of collection (detected without
labels when it is indexed: whysim.indexer.collection_kind):

- class-level (broad categories, like flowers: hundreds of images of each class): similar means
  of the same kind. The score is symmetric score normalisation (S-norm, from speaker
  verification) against a cohort, a seeded sample of the collection's own vectors:

      z(a, b) = ((s - mu_a) / sigma_a + (s - mu_b) / sigma_b) / 2

  with mu_x, sigma_x the mean and spread of x's similarities to the whole cohort; cut 1.05.
- instance-level (several photos of each thing, like rooms: 1-2 true matches among many
  look-alikes): similar means the same thing. The score is adaptive S-norm (AS-norm): mu_x and
  sigma_x come from x's AS_NORM_TOP most similar cohort members, its look-alikes, so a hit must
  stand out from the look-alikes; cut 3.0 (three spreads above them).

Both cuts were chosen on the top-10 hits of every leave-one-out query of the two shared sets
(tests/benchmarks/study_verdicts.py; docs/explanations.md "Verdicts"). With labels, `whysim
calibrate` fits the cut on the collection's own top-k hits instead (a `fitted` rule).

Each verdict also carries one figure a person can read the same way on every collection: the
match strength, a logistic of (score - cut) / spread, 50% at the cut, so >= 50% is "similar".
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
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
MIN_SIGMA = 1e-6
# Rows per block of Cohort.statistics: 1024 x a cohort of 1000 is 8 MB per float64 temporary;
# `whysim evaluate` on flowers asked for 86,000 rows at once (2.4 GB peak).
STATISTICS_BLOCK = 1024

S_NORM = "s-norm"
AS_NORM = "as-norm"
# AS-norm's look-alikes: each side's 50 most similar cohort members (25 to 50 were best on rooms),
# and in a small collection no more than a quarter of it (at least 5), so they stay look-alikes.
AS_NORM_TOP = 50
TOP_FRACTION_OF_SMALL = 4
MIN_TOP = 5
# Label-free cuts and spreads of the match figure, per normalisation. The spreads are the
# maximum-likelihood fit of P(true match) = logistic((z - cut) / spread) on the shared sets'
# top-10 hits (flowers for S-norm, rooms for AS-norm).
DEFAULT_CUT = 1.05
INSTANCE_CUT = 3.0
CLASS_SPREAD = 1.0
INSTANCE_SPREAD = 0.5
# Without a collection to judge against, a cut on the cosine itself (the model card's threshold).
COSINE_SPREAD = 0.1

DEFAULT_RULE_KIND = "default"
FITTED_RULE_KIND = "fitted"
RULE_SETTING = "verdict_rule"


@dataclass(frozen=True)
class VerdictRule:
    """How a pair's similarity becomes "similar" / "dissimilar", and its match strength."""

    kind: str = DEFAULT_RULE_KIND  # "default" (label-free) or "fitted" (calibrated on labelled hits)
    cut: float = DEFAULT_CUT
    normalisation: str = S_NORM  # "s-norm" (whole cohort) or "as-norm" (each side's top cohort members)
    top: int | None = None  # AS-norm: how many of each side's most similar cohort members
    spread: float = CLASS_SPREAD  # the match figure goes from 27% to 73% between cut - spread and cut + spread
    collection: str = "class-level"  # the kind of collection the rule is for
    hits: int = 0  # labelled top-k hits it was fitted on (fitted rules)
    f1: float | None = None  # of "similar" on those hits
    pairs: int = 0  # labelled random pairs (rules fitted before whysim judged verdicts on top-k hits)
    balanced_accuracy: float | None = None  # on those pairs
    source: str | None = None  # the labelled folder it was fitted on
    model: str | None = None  # ModelCard.key() of the model it was fitted for

    @property
    def fitted(self) -> bool:
        return self.kind == FITTED_RULE_KIND

    def match(self, score: float) -> float:
        """The match strength in 0..1: 0.5 at the cut, "similar" from there up."""
        return match_strength(score, self.cut, self.spread)

    def describe(self) -> str:
        """In plain words, for people: what "similar" means here and where the rule comes from."""
        meaning = ("the hit stands out from the photos of the collection that look most like the query"
                   if self.normalisation == AS_NORM else
                   "the pair is more alike than photos of this collection usually are")
        if self.fitted:
            found = (f"F1 {self.f1:.2f} on {self.hits:,} labelled search hits" if self.f1 is not None else
                     f"balanced accuracy {self.balanced_accuracy or 0:.2f} on {self.pairs:,} labelled pairs")
            return f"similar when {meaning}; fitted on the labelled photos of {self.source} ({found})"
        kind = ("collections of several photos of each thing" if self.normalisation == AS_NORM
                else "collections of broad categories")
        return f"similar when {meaning}: whysim's default for {kind} (whysim calibrate fits it to labelled photos)"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "fitted": self.fitted, "description": self.describe()}

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None) -> VerdictRule:
        if not text:
            return cls()
        known = {field.name for field in fields(cls)}
        return cls(**{key: value for key, value in json.loads(text).items() if key in known})


def match_strength(score: float, cut: float, spread: float) -> float:
    """logistic((score - cut) / spread): 0.5 at the cut, towards 1 above it and 0 below."""
    return 1.0 / (1.0 + math.exp(-max(min((score - cut) / spread, 50.0), -50.0)))


def match_percent(match: float) -> int:
    """The match strength as a whole percentage, rounded down, so 50% and up is always "similar"."""
    return int(math.floor(100.0 * match))


def default_rule(instance_level: bool) -> VerdictRule:
    """The label-free rule for a collection of this kind."""
    if instance_level:
        return VerdictRule(cut=INSTANCE_CUT, normalisation=AS_NORM, top=AS_NORM_TOP, spread=INSTANCE_SPREAD,
                           collection="instance-level")
    return VerdictRule()


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

    def statistics(self, vectors: np.ndarray, top: int | None = None,
                   partners: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(mean, standard deviation) of each vector's similarities to the cohort, leaving itself
        out (and, given `partners`, the other image of its pair): to all of it, or (AS-norm) to its
        `top` most similar members, its look-alikes, which the pair must stand out from. (A median
        and MAD, robust to the true matches among the cohort, were tried: their best single cut fell
        further short on one of the two shared sets; docs/explanations.md "Verdicts".)"""
        matrix = np.asarray(vectors, dtype=np.float32).reshape(-1, self.vectors.shape[1])
        if len(matrix) > STATISTICS_BLOCK:  # bounded temporaries: (rows, cohort) float64 each
            partner_rows = (None if partners is None else
                            np.asarray(partners, dtype=np.float32).reshape(-1, self.vectors.shape[1]))
            parts = [self.statistics(matrix[start:start + STATISTICS_BLOCK], top,
                                     None if partner_rows is None else partner_rows[start:start + STATISTICS_BLOCK])
                     for start in range(0, len(matrix), STATISTICS_BLOCK)]
            return np.concatenate([mean for mean, _ in parts]), np.concatenate([sigma for _, sigma in parts])
        sims = (matrix @ self.vectors.T).astype(np.float64)
        left_out = sims >= SELF_SIMILARITY
        if partners is not None:
            partner_matrix = np.asarray(partners, dtype=np.float32).reshape(-1, self.vectors.shape[1])
            left_out |= (partner_matrix @ self.vectors.T) >= SELF_SIMILARITY
        sims = np.where(left_out, -np.inf, sims)
        if top is not None:
            top = min(top, max(MIN_TOP, len(self.vectors) // TOP_FRACTION_OF_SMALL))
            if top < sims.shape[1]:
                sims = np.partition(sims, -top, axis=1)[:, -top:]
        others = np.isfinite(sims)
        counts = others.sum(axis=1)
        safe = np.maximum(counts, 1)
        finite = np.where(others, sims, 0.0)
        mean = finite.sum(axis=1) / safe
        variance = np.where(others, (finite - mean[:, None]) ** 2, 0.0).sum(axis=1) / safe
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
    match: float  # the match strength, 0..1, >= 0.5 exactly when similar


class VerdictJudge:
    """A cohort and a rule: judges pairs of (final) vectors."""

    def __init__(self, cohort: Cohort, rule: VerdictRule) -> None:
        self.cohort = cohort
        self.rule = rule

    def scores(self, left: np.ndarray, right: np.ndarray, similarities: np.ndarray) -> np.ndarray:
        """Each side against the cohort without the other side: a pair is not its own look-alike."""
        top = self.rule.top if self.rule.normalisation == AS_NORM else None
        left = np.asarray(left, dtype=np.float32)
        right = np.asarray(right, dtype=np.float32).reshape(left.shape)
        return normalised_scores(similarities, self.cohort.statistics(left, top, right),
                                 self.cohort.statistics(right, top, left))

    def judge(self, left: np.ndarray, right: np.ndarray, similarities: np.ndarray) -> list[Verdict]:
        """Verdicts for pairs (left_i, right_i) with cosine similarities_i; left may be one vector."""
        right = np.asarray(right, dtype=np.float32).reshape(len(np.atleast_1d(similarities)), -1)
        left = np.asarray(left, dtype=np.float32).reshape(-1, right.shape[1])
        if len(left) == 1 and len(right) > 1:
            left = np.repeat(left, len(right), axis=0)
        sims = np.atleast_1d(np.asarray(similarities, dtype=np.float64))
        scores = self.scores(left, right, sims)
        return [Verdict(bool(score >= self.rule.cut), float(score), float(sim), self.rule.match(float(score)))
                for score, sim in zip(scores, sims)]


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
