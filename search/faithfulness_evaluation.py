"""Deletion/insertion AUCs of factual, counterfactual and random maps over labelled pairs, and their summary.

Only the hit of each pair is perturbed (scored against the unmodified query). Pairs are
drawn at random and the explainer is symmetric (the query map of (A, B) is the hit map of
(B, A)), so the hit side of random pairs already covers what the query side would measure.

The factual map is the evidence for the verdict, so what its deletion should do depends on
the verdict. Groups that mix verdicts therefore also get the maps by their role: "for
similarity" (the factual map of a "similar" pair, the counterfactual of a "dissimilar" one)
and "against similarity" (the other), whose expected effect on the curves never changes.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from indexer.imaging import ImageRejected
from search.explaining import SIMILAR, PairExplainer
from search.faithfulness import DEFAULT_BATCH_SIZE, STEPS, Embed, perturbation_curves, random_map
from search.image_files import read_image_file
from search.pair_sampling import LabelledPair

MAP_KINDS = ("factual", "counterfactual", "random")
ROLE_KINDS = ("for similarity", "against similarity")
CURVE_KINDS = ("deletion", "insertion")
GROUPS = ("all", "similar verdict", "dissimilar verdict", "same class", "different class")
VERDICT_GROUPS = ("similar verdict", "dissimilar verdict")


@dataclass(frozen=True)
class PairResult:
    pair: LabelledPair
    similarity: float
    verdict: str
    aucs: dict[str, dict[str, float]]  # map kind -> curve kind -> normalised AUC

    def in_group(self, group: str) -> bool:
        return {
            "all": True,
            "similar verdict": self.verdict == SIMILAR,
            "dissimilar verdict": self.verdict != SIMILAR,
            "same class": self.pair.same_class,
            "different class": not self.pair.same_class,
        }[group]

    def role_aucs(self) -> dict[str, dict[str, float]]:
        """The AUCs of the map of evidence for similarity and of the map of evidence against it."""
        kinds = ("factual", "counterfactual") if self.verdict == SIMILAR else ("counterfactual", "factual")
        return dict(zip(ROLE_KINDS, (self.aucs[kind] for kind in kinds)))

    def to_dict(self) -> dict[str, object]:
        return {"query": str(self.pair.query), "hit": str(self.pair.hit), "query_label": self.pair.query_label,
                "hit_label": self.pair.hit_label, "similarity": self.similarity, "verdict": self.verdict,
                "aucs": self.aucs}


@dataclass
class Evaluation:
    results: list[PairResult] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "path: reason" of pairs that could not be read


def evaluate_pair(explainer: PairExplainer, embed: Embed, pair: LabelledPair, rng: np.random.Generator,
                  steps: int = STEPS, batch_size: int = DEFAULT_BATCH_SIZE) -> PairResult:
    size = explainer.branch.input_size
    query, hit = read_image_file(pair.query, size), read_image_file(pair.hit, size)
    explanation = explainer.explain(query.pixels, hit.pixels[None])[0]
    maps = {"factual": explanation.hit.factual, "counterfactual": explanation.hit.counterfactual,
            "random": random_map(explanation.hit.factual.shape, rng)}
    partner = embed(query.pixels[None])[0]
    curves = perturbation_curves(embed, hit.pixels, partner, maps, rng, steps, batch_size)
    aucs = {name: {"deletion": c.deletion_auc, "insertion": c.insertion_auc} for name, c in curves.items()}
    return PairResult(pair, explanation.similarity, explanation.verdict, aucs)


def evaluate_pairs(explainer: PairExplainer, embed: Embed, pairs: Sequence[LabelledPair], seed: int,
                   steps: int = STEPS, batch_size: int = DEFAULT_BATCH_SIZE,
                   progress: bool = False) -> Evaluation:
    """Every pair in order; random maps and tie-breaking come from one generator seeded by `seed`."""
    rng = np.random.default_rng([seed, 1])
    evaluation = Evaluation()
    for pair in tqdm(pairs, desc="pairs", unit="pair", disable=not progress):
        try:
            evaluation.results.append(evaluate_pair(explainer, embed, pair, rng, steps, batch_size))
        except ImageRejected as exc:
            evaluation.skipped.append(str(exc))
    return evaluation


def _spread(values: Iterable[float]) -> dict[str, float]:
    array = np.fromiter(values, dtype=np.float64)
    return {"mean": float(array.mean()), "std": float(array.std(ddof=1)) if array.size > 1 else 0.0}


def group_kinds(group: str) -> tuple[str, ...]:
    return MAP_KINDS if group in VERDICT_GROUPS else MAP_KINDS + ROLE_KINDS


def summarise(results: Sequence[PairResult]) -> dict[str, dict[str, object]]:
    """Per group: pair count, similarity, each map's AUCs and its paired difference from the random map."""
    summary: dict[str, dict[str, object]] = {}
    for group in GROUPS:
        members = [r for r in results if r.in_group(group)]
        if not members:
            continue
        entry: dict[str, object] = {"n": len(members), "similarity": _spread(r.similarity for r in members)}
        aucs = [{**r.aucs, **r.role_aucs()} for r in members]
        for kind in group_kinds(group):
            stats: dict[str, dict[str, float]] = {}
            for curve in CURVE_KINDS:
                stats[curve] = _spread(a[kind][curve] for a in aucs)
                if kind != "random":
                    stats[f"{curve}_minus_random"] = _spread(a[kind][curve] - a["random"][curve] for a in aucs)
            entry[kind] = stats
        summary[group] = entry
    return summary


def _cell(stats: dict[str, float]) -> str:
    return f"{stats['mean']:+.3f} ± {stats['std']:.3f}"


def format_table(summary: dict[str, dict[str, object]]) -> str:
    """One row per group and map: AUC mean ± std, and the mean ± std of (map - random) per pair."""
    header = (f"{'group':<19} {'n':>4}  {'map':<18} {'deletion AUC':>15} {'insertion AUC':>15}"
              f" {'del - random':>15} {'ins - random':>15}")
    lines = [header, "-" * len(header)]
    for group in (name for name in GROUPS if name in summary):
        entry = summary[group]
        for kind in group_kinds(group):
            stats = entry[kind]
            assert isinstance(stats, dict)
            vs_random = ((_cell(stats["deletion_minus_random"]), _cell(stats["insertion_minus_random"]))
                         if kind != "random" else ("", ""))
            lines.append(f"{group:<19} {entry['n']:>4}  {kind:<18} {_cell(stats['deletion']):>15} "
                         f"{_cell(stats['insertion']):>15} {vs_random[0]:>15} {vs_random[1]:>15}")
    return "\n".join(lines)
