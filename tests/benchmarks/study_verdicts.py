"""Which label-free verdict rule is right where users meet verdicts: on the top-k hits of real queries?

For each labelled collection the default model embeds every distinct image with the indexer's own
read stage (cached under --cache), the vectors go through the collection's whitening exactly as
`whysim index` would fit it, and every image queries the rest (leave-one-out). Each candidate rule
scores the top-k hits of every query; a hit is a true match when it has the query's label. For
each rule and collection the script prints the F1 of "similar" on those hits at the rule's
label-free cut and at the best cut for that collection (an oracle), the fraction of hits called
similar, and the balanced accuracy on the random verification pairs of `whysim evaluate`.

    .venv/bin/python tests/benchmarks/study_verdicts.py ../shared/datasets/flowers ../shared/datasets/rooms \
        [--k 10] [--cache bench-results/verdict-cache]
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from bench_support import least_shortfall_cut, require_dataset

import whysim.indexer  # noqa: F401  first: it sets the OpenMP wait policy before torch loads
from whysim.indexer.collection_kind import instance_level
from whysim.indexer.evaluation.evaluate import embed_files
from whysim.indexer.evaluation.pair_metrics import f1_at
from whysim.indexer.evaluation.topk_verdicts import TopKHits, best_f1, leave_one_out_hits, precision_recall_f1
from whysim.indexer.evaluation.verification import pair_scores, verification_pairs
from whysim.indexer.model.loading import ModelRequest, build_branch
from whysim.indexer.pipeline.whitening_policy import collection_whitening
from whysim.indexer.training.collection import scan_labelled
from whysim.indexer.verdicts import AS_NORM, Cohort, VerdictJudge, VerdictRule, balanced_accuracy, default_rule

Scorer = Callable[[np.ndarray, np.ndarray, np.ndarray, Cohort], np.ndarray]


@dataclass
class Collection:
    name: str
    raw: np.ndarray  # the branch's vectors
    vectors: np.ndarray  # as served (whitened when the policy whitens this collection)
    labels: list[str]
    instance_level: bool


def load(dataset: Path, cache: Path, batch_size: int, workers: int) -> Collection:
    collection, _ = scan_labelled(dataset).distinct()
    paths = [collection.root / image.path for image in collection.images]
    target = cache / f"{dataset.name}-default.npz"
    if target.is_file():
        with np.load(target) as data:
            raw, kept = data["raw"], data["kept"]
    else:
        branch = build_branch(ModelRequest())
        embedded = embed_files(branch, paths, torch.device("cpu"), batch_size, workers, progress=True)
        raw, kept = embedded.vectors, np.asarray(embedded.kept)
        cache.mkdir(parents=True, exist_ok=True)
        np.savez(target, raw=raw, kept=kept)
    labels = [collection.images[int(position)].label for position in kept]
    transform = collection_whitening(raw, True)
    vectors = transform.apply(raw) if transform is not None else raw
    return Collection(dataset.name, raw, vectors, labels, instance_level(raw))


def judged(rule: VerdictRule) -> Scorer:
    """The scores whysim's own VerdictJudge gives under `rule`."""
    def score(left: np.ndarray, right: np.ndarray, sims: np.ndarray, cohort: Cohort) -> np.ndarray:
        return VerdictJudge(cohort, rule).scores(left, right, sims)
    return score


def tail_gap(first: int, last: int) -> Scorer:
    """Meta-recognition, simplified: how far the pair's similarity stands above each side's ranked
    cohort similarities at ranks first..last (the look-alikes that are not matches), in their spread."""
    def score(left: np.ndarray, right: np.ndarray, sims: np.ndarray, cohort: Cohort) -> np.ndarray:
        def stats(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            ranked = -np.sort(-np.where((s := matrix @ cohort.vectors.T) < 0.9999, s, -np.inf), axis=1)
            tail = ranked[:, first - 1:last]
            return tail.mean(axis=1), np.maximum(tail.std(axis=1), 1e-6)
        (mu_l, sd_l), (mu_r, sd_r) = stats(left), stats(right)
        return 0.5 * ((sims - mu_l) / sd_l + (sims - mu_r) / sd_r)
    return score


def cosine(left: np.ndarray, right: np.ndarray, sims: np.ndarray, cohort: Cohort) -> np.ndarray:
    return sims


RULES: dict[str, Scorer] = {
    "cosine": cosine,
    "s-norm": judged(VerdictRule()),
    **{f"as-norm top{n}": judged(VerdictRule(normalisation=AS_NORM, top=n)) for n in (10, 25, 50, 100, 200)},
    **{f"tail {a}-{b}": tail_gap(a, b) for a, b in ((3, 20), (5, 50), (10, 100), (20, 200))},
}


def rule_scores(rule: Scorer, vectors: np.ndarray, hits: TopKHits, cohort: Cohort) -> np.ndarray:
    return rule(vectors[hits.queries], vectors[hits.hits], hits.similarities, cohort)


def pair_balanced_accuracy(rule: Scorer, collection: Collection, cohort: Cohort, cut: float) -> float:
    pairs = verification_pairs(collection.labels)
    vectors = collection.vectors
    scores = rule(vectors[pairs.left], vectors[pairs.right], pair_scores(vectors, pairs), cohort)
    return balanced_accuracy(scores, pairs.same, cut)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("datasets", nargs="+", type=Path)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--cache", type=Path, default=Path("bench-results/verdict-cache"))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args()
    collections = [load(require_dataset(path), args.cache, args.batch_size, args.workers) for path in args.datasets]
    results = {}
    for collection in collections:
        cohort = Cohort.sample(collection.vectors)
        hits = leave_one_out_hits(collection.vectors, collection.labels, args.k)
        kind = "instance-level" if collection.instance_level else "class-level"
        print(f"\n{collection.name}: {len(collection.labels)} images, {kind}, top-{args.k} hits "
              f"{len(hits.same)} ({hits.same.mean():.3f} true matches)")
        print(f"{'rule':>18} {'best cut':>9} {'F1 best':>8} {'similar@best':>12} {'pair BA@best':>12}")
        results[collection.name] = {}
        for name, rule in RULES.items():
            scores = rule_scores(rule, collection.vectors, hits, cohort)
            cut, f1 = best_f1(scores, hits.same)
            ba = pair_balanced_accuracy(rule, collection, cohort, cut)
            results[collection.name][name] = {"scores": scores, "same": hits.same}
            print(f"{name:>18} {cut:9.3f} {f1:8.3f} {float((scores >= cut).mean()):12.3f} {ba:12.3f}")
    print("\nOne cut for all collections (worst shortfall from each set's best F1):")
    for name in RULES:
        curves = [(results[c.name][name]["scores"], results[c.name][name]["same"]) for c in collections]
        cut, column, best = least_shortfall_cut(curves, f1_at, (0.001, 0.999), 600)
        per_set = ", ".join(f"{c.name} {column[i]:.3f} (best {best[i]:.3f})"
                            for i, c in enumerate(collections))
        print(f"{name:>18} cut {cut:8.3f}: {per_set}")
    print("\nwhysim's label-free default: the rule for each collection's detected kind, at its own cut:")
    summary = {}
    for collection in collections:
        rule = default_rule(collection.instance_level)
        cohort = Cohort.sample(collection.vectors)
        hits = leave_one_out_hits(collection.vectors, collection.labels, args.k)
        scores = judged(rule)(collection.vectors[hits.queries], collection.vectors[hits.hits], hits.similarities,
                              cohort)
        precision, recall, f1 = precision_recall_f1(scores >= rule.cut, hits.same)
        _, best = best_f1(scores, hits.same)
        ba = pair_balanced_accuracy(judged(rule), collection, cohort, rule.cut)
        summary[collection.name] = {"rule": rule.normalisation, "cut": rule.cut, "topk_f1": round(f1, 4),
                                    "topk_f1_best": round(best, 4), "precision": round(precision, 4),
                                    "recall": round(recall, 4), "pair_balanced_accuracy": round(ba, 4)}
        print(f"{collection.name:>10}: {rule.normalisation} cut {rule.cut}: top-{args.k} F1 {f1:.3f} (best {best:.3f}; "
              f"precision {precision:.3f}, recall {recall:.3f}), random-pair balanced accuracy {ba:.3f}")
    print(json.dumps({"benchmark": "study_verdicts", "k": args.k, "default": summary}))


if __name__ == "__main__":
    main()
