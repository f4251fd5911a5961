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

from whysim.indexer.imaging import ImageRejected
from whysim.indexer.model.whitening import Whitening
from whysim.indexer.verdicts import VerdictJudge
from whysim.search.evaluation.correspondence_faithfulness import (
    BoxCheck,
    BoxDeletion,
    box_deletion,
    summarise_box_deletions,
)
from whysim.search.evaluation.faithfulness import DEFAULT_BATCH_SIZE, STEPS, Embed, perturbation_curves, random_map
from whysim.search.evaluation.image_files import read_image_file
from whysim.search.evaluation.pair_sampling import LabelledPair
from whysim.search.explain.gradcam import GRAD_CAM, METHODS, SIMILAR, PairExplainer

RANDOM = "random"
ROLES = ("for similarity", "against similarity")
CURVE_KINDS = ("deletion", "insertion")
GROUPS = ("all", "similar verdict", "dissimilar verdict", "same class", "different class")
VERDICT_GROUPS = ("similar verdict", "dissimilar verdict")
DEFAULT_VARIANTS = (GRAD_CAM,)


def parse_variant(text: str) -> tuple[str, str]:
    """'gradcam', 'contribution' or 'gradcam@previous' -> (method, map layer)."""
    method, _, layer = text.strip().partition("@")
    layer = layer or "last"
    if method not in METHODS or layer not in ("last", "previous"):
        raise ValueError(f"unknown map {text!r}: use one of {', '.join(METHODS)}, optionally @previous")
    return method, layer


def variant_explainers(explainer: PairExplainer, variants: Sequence[str]) -> dict[str, PairExplainer]:
    """One explainer per map variant, all on `explainer`'s branch, threshold and whitening."""
    found = {}
    for variant in variants:
        method, layer = parse_variant(variant)
        same = method == explainer.method and layer == explainer.map_layer
        found[variant] = explainer if same else PairExplainer(explainer.branch, explainer.threshold,
                                                               explainer.whitening, method, layer)
    return found


@dataclass(frozen=True)
class PairResult:
    pair: LabelledPair
    similarity: float
    verdict: str
    aucs: dict[str, dict[str, float]]  # "<variant> factual" / "<variant> counterfactual" / "random" -> curve -> AUC
    boxes: BoxDeletion | None = None

    @property
    def variants(self) -> list[str]:
        return [name[:-len(" factual")] for name in self.aucs if name.endswith(" factual")]

    def in_group(self, group: str) -> bool:
        return {
            "all": True,
            "similar verdict": self.verdict == SIMILAR,
            "dissimilar verdict": self.verdict != SIMILAR,
            "same class": self.pair.same_class,
            "different class": not self.pair.same_class,
        }[group]

    def role_aucs(self) -> dict[str, dict[str, float]]:
        """Per variant, the AUCs of its map of evidence for similarity and of its map against it."""
        kinds = ("factual", "counterfactual") if self.verdict == SIMILAR else ("counterfactual", "factual")
        return {f"{variant} {role}": self.aucs[f"{variant} {kind}"]
                for variant in self.variants for role, kind in zip(ROLES, kinds)}

    def to_dict(self) -> dict[str, object]:
        return {"query": str(self.pair.query), "hit": str(self.pair.hit), "query_label": self.pair.query_label,
                "hit_label": self.pair.hit_label, "similarity": self.similarity, "verdict": self.verdict,
                "aucs": self.aucs, "boxes": self.boxes.to_dict() if self.boxes else None}


@dataclass
class Evaluation:
    results: list[PairResult] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "path: reason" of pairs that could not be read


def collection_embed(embed: Embed, whitening: Whitening | None) -> Embed:
    """Vectors as the served index scores them: through the collection's whitening when it has one,
    so the perturbation curves measure the similarity that the maps explain."""
    if whitening is None:
        return embed
    return lambda pixels: whitening.apply(embed(pixels))


def evaluate_pair(explainers: dict[str, PairExplainer], embed: Embed, pair: LabelledPair, rng: np.random.Generator,
                  steps: int = STEPS, batch_size: int = DEFAULT_BATCH_SIZE,
                  box_check: BoxCheck = BoxCheck(), judge: VerdictJudge | None = None) -> PairResult:
    first = next(iter(explainers.values()))
    size = first.branch.input_size
    query, hit = read_image_file(pair.query, size), read_image_file(pair.hit, size)
    maps = {}
    for variant, explainer in explainers.items():
        explanation = explainer.explain(query.pixels, hit.pixels[None], judge=judge)[0]
        maps[f"{variant} factual"], maps[f"{variant} counterfactual"] = (explanation.hit.factual,
                                                                          explanation.hit.counterfactual)
    maps[RANDOM] = random_map(explanation.correspondence.hit_grid, rng)
    partner = embed(query.pixels[None])[0]
    curves = perturbation_curves(embed, hit.pixels, partner, maps, rng, steps, batch_size)
    aucs = {name: {"deletion": c.deletion_auc, "insertion": c.insertion_auc} for name, c in curves.items()}
    boxes = box_deletion(embed, hit.pixels, partner, explanation.correspondence, rng, first.branch.input_mean,
                         box_check)
    return PairResult(pair, explanation.similarity, explanation.verdict, aucs, boxes)


def evaluate_pairs(explainer: PairExplainer, embed: Embed, pairs: Sequence[LabelledPair], seed: int,
                   steps: int = STEPS, batch_size: int = DEFAULT_BATCH_SIZE, progress: bool = False,
                   variants: Sequence[str] = DEFAULT_VARIANTS,
                   box_check: BoxCheck = BoxCheck(), judge: VerdictJudge | None = None) -> Evaluation:
    """Every pair in order; random maps, boxes and tie-breaking come from one generator seeded by `seed`.
    `embed` must score as `explainer` does (collection_embed with the explainer's whitening); `judge`
    makes the verdicts (None: the explainer's cosine cut)."""
    explainers = variant_explainers(explainer, variants)
    rng = np.random.default_rng([seed, 1])
    evaluation = Evaluation()
    for pair in tqdm(pairs, desc="pairs", unit="pair", disable=not progress):
        try:
            evaluation.results.append(evaluate_pair(explainers, embed, pair, rng, steps, batch_size, box_check,
                                                    judge))
        except ImageRejected as exc:
            evaluation.skipped.append(str(exc))
    return evaluation


def _spread(values: Iterable[float], paired: bool = False) -> dict[str, float]:
    array = np.fromiter(values, dtype=np.float64)
    stats = {"mean": float(array.mean()), "std": float(array.std(ddof=1)) if array.size > 1 else 0.0}
    if paired:  # a paired difference: its t statistic and how often it is below zero
        stats["t"] = stats["mean"] / (stats["std"] / np.sqrt(array.size)) if stats["std"] > 0 else 0.0
        stats["below_zero"] = float((array < 0).mean())
    return stats


def group_kinds(group: str, results: Sequence[PairResult]) -> tuple[str, ...]:
    kinds = tuple(results[0].aucs)
    return kinds if group in VERDICT_GROUPS else kinds + tuple(results[0].role_aucs())


def summarise(results: Sequence[PairResult]) -> dict[str, dict[str, object]]:
    """Per group: pair count, similarity, each map's AUCs and its paired difference from the random map,
    and (group "all") the correspondence's box-deletion check."""
    summary: dict[str, dict[str, object]] = {}
    for group in GROUPS:
        members = [r for r in results if r.in_group(group)]
        if not members:
            continue
        entry: dict[str, object] = {"n": len(members), "similarity": _spread(r.similarity for r in members)}
        aucs = [{**r.aucs, **r.role_aucs()} for r in members]
        for kind in group_kinds(group, members):
            stats: dict[str, dict[str, float]] = {}
            for curve in CURVE_KINDS:
                stats[curve] = _spread(a[kind][curve] for a in aucs)
                if kind != RANDOM:
                    stats[f"{curve}_minus_random"] = _spread((a[kind][curve] - a[RANDOM][curve] for a in aucs),
                                                             paired=True)
            entry[kind] = stats
        boxes = [r.boxes for r in members if r.boxes is not None]
        if boxes:
            entry["correspondence"] = summarise_box_deletions(boxes)
        summary[group] = entry
    return summary


def _cell(stats: dict[str, float]) -> str:
    return f"{stats['mean']:+.3f} ± {stats['std']:.3f}"


def format_table(summary: dict[str, dict[str, object]]) -> str:
    """One row per group and map: AUC mean ± std, and the mean ± std of (map - random) per pair;
    then the correspondence check per group."""
    header = (f"{'group':<19} {'n':>4}  {'map':<34} {'deletion AUC':>15} {'insertion AUC':>15}"
              f" {'del - random':>15} {'ins - random':>15}")
    lines = [header, "-" * len(header)]
    for group in (name for name in GROUPS if name in summary):
        entry = summary[group]
        for kind, stats in entry.items():
            if kind in ("n", "similarity", "correspondence"):
                continue
            assert isinstance(stats, dict)
            vs_random = ((_cell(stats["deletion_minus_random"]), _cell(stats["insertion_minus_random"]))
                         if kind != RANDOM else ("", ""))
            lines.append(f"{group:<19} {entry['n']:>4}  {kind:<34} {_cell(stats['deletion']):>15} "
                         f"{_cell(stats['insertion']):>15} {vs_random[0]:>15} {vs_random[1]:>15}")
    lines += ["", "correspondence: deleting the hit's top matched box vs a random box of the same size "
                  "(similarity lost, paired)"]
    for group in (name for name in GROUPS if "correspondence" in summary.get(name, {})):
        check = summary[group]["correspondence"]
        assert isinstance(check, dict)
        lines.append(f"{group:<19} {check['n']:>4}  top box lowers it more for {check['top_lowers_more']:.0%} of "
                     f"pairs; top {check['top_drop']:+.4f}, random {check['random_drop']:+.4f}, mean difference "
                     f"{check['mean_difference']:+.4f} (t = {check['t']:.1f})")
    return "\n".join(lines)
