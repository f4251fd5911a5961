"""Which untrained default should whysim use? Backbone x input size x pooling x multi-scale x whitening,
on several labelled collections at once, with the CPU cost of each candidate.

For each (backbone, input size) every collection is decoded by the indexer's own read stage and run
once through the BatchNorm-folded backbone; every pooling is computed from those same feature maps,
and vectors are cached under --cache, so later runs (and the analysis of multi-scale descriptors,
whitening and verdict rules) cost no model time. Metrics are those of `whysim evaluate` (leave-one-out
over distinct files, the same verification pairs). Model cost is images/s of the model alone on
pre-decoded batches, all candidates in the same run.

    .venv/bin/python tests/benchmarks/study_defaults.py ../shared/datasets/flowers ../shared/datasets/rooms \
        [--candidates lite0@224 lite0@448 ...] [--cache bench-results/study-cache]
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from bench_support import least_shortfall_cut, pooled_vectors, require_dataset

import whysim.indexer  # noqa: F401  first: it sets the OpenMP wait policy before torch loads
from whysim.indexer.evaluation.evaluate import verdict_metrics
from whysim.indexer.evaluation.retrieval_metrics import retrieval_metrics
from whysim.indexer.evaluation.verification import pair_scores, verification_pairs
from whysim.indexer.model.loading import ModelRequest, build_branch
from whysim.indexer.model.pooling import AveragePool, GeMPool
from whysim.indexer.model.whitening import DEFAULT_POWER, DEFAULT_SHRINKAGE, fit_whitening
from whysim.indexer.runtime.torch_session import retain_freed_memory
from whysim.indexer.training.collection import LabelledCollection, scan_labelled
from whysim.indexer.verdicts import Cohort, VerdictJudge, VerdictRule, balanced_accuracy

POOLINGS: dict[str, torch.nn.Module] = {"avg": AveragePool(), "gem3": GeMPool(3.0)}
DEFAULT_CANDIDATES = ("lite0@224", "lite0@320", "lite0@448", "lite1@320", "lite1@448", "lite2@448")


@dataclass(frozen=True)
class Candidate:
    backbone: str
    size: int

    @classmethod
    def parse(cls, text: str) -> Candidate:
        backbone, size = text.split("@")
        return cls(backbone, int(size))

    @property
    def name(self) -> str:
        return f"{self.backbone}@{self.size}"


def distinct_collection(root: Path) -> tuple[list[Path], list[str]]:
    collection: LabelledCollection = scan_labelled(root)
    distinct, _ = collection.distinct()
    return [distinct.root / image.path for image in distinct.images], [image.label for image in distinct.images]


def embed(candidate: Candidate, paths: list[Path], batch_size: int, workers: int) -> dict[str, np.ndarray]:
    branch = build_branch(ModelRequest(backbone=candidate.backbone, input_size=candidate.size, pooling="avg"))
    branch.eval().fold_batchnorm()
    branch = branch.to(memory_format=torch.channels_last)
    return pooled_vectors(branch, paths, candidate.size, batch_size, workers, POOLINGS, candidate.name)


def model_rate(candidate: Candidate, batch_size: int, batches: int = 3) -> float:
    """Images/s of the folded model alone on random uint8 batches (no decoding)."""
    branch = build_branch(ModelRequest(backbone=candidate.backbone, input_size=candidate.size))
    branch.eval().fold_batchnorm()
    branch = branch.to(memory_format=torch.channels_last)
    pixels = torch.randint(0, 256, (batch_size, 3, candidate.size, candidate.size), dtype=torch.uint8)
    pixels = pixels.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        branch(pixels)  # warm-up
        started = time.perf_counter()
        for _ in range(batches):
            branch(pixels)
    return batches * batch_size / (time.perf_counter() - started)


def cached_vectors(cache: Path, dataset: Path, candidate: Candidate, paths: list[Path], batch_size: int,
                   workers: int) -> dict[str, np.ndarray]:
    target = cache / f"{dataset.name}-{candidate.name}.npz"
    if target.is_file():
        with np.load(target) as data:
            if data["count"] == len(paths):
                return {name: data[name] for name in POOLINGS}
    vectors = embed(candidate, paths, batch_size, workers)
    cache.mkdir(parents=True, exist_ok=True)
    np.savez(target, count=len(paths), **vectors)
    return vectors


def transformed(vectors: np.ndarray, whitening: tuple[float, float] | None) -> np.ndarray:
    if whitening is None:
        return vectors
    return fit_whitening(vectors, power=whitening[0], shrinkage=whitening[1]).apply(vectors)


def quality(vectors: np.ndarray, labels: list[str]) -> dict[str, float]:
    metrics = retrieval_metrics(vectors, labels, ks=(1, 5, 10))
    metrics.update(verdict_metrics(vectors, labels, VerdictRule()))
    return {key: round(float(value), 4) for key, value in metrics.items()}


def universal_cut(sets: list[tuple[np.ndarray, list[str]]], cosine: bool = False) -> tuple[float, list[float]]:
    """The one cut (on the normalised score, or on raw cosine) whose worst shortfall from each set's
    best balanced accuracy is smallest; returns it and the balanced accuracy on each set."""
    curves = []
    for vectors, labels in sets:
        pairs = verification_pairs(labels)
        sims = pair_scores(vectors, pairs)
        scores = sims if cosine else VerdictJudge(Cohort.sample(vectors), VerdictRule()).scores(
            vectors[pairs.left], vectors[pairs.right], sims)
        curves.append((scores, pairs.same))
    cut, column, _ = least_shortfall_cut(curves, balanced_accuracy, (0.01, 0.999), 400)
    return cut, [float(value) for value in column]


def print_speeds(candidates: list[Candidate], batch_size: int, rounds: int) -> None:
    """Every candidate timed once per round, rounds taking turns (a load that drifts hits all
    alike); the best round of each, and its cost per image relative to the first candidate."""
    rates: dict[str, list[float]] = {c.name: [] for c in candidates}
    for _ in range(rounds):
        for candidate in candidates:
            rates[candidate.name].append(model_rate(candidate, batch_size, batches=2))
    baseline = max(rates[candidates[0].name])
    for name, found in rates.items():
        print(f"{name:>10} {max(found):6.1f} images/s  CPU cost per image {baseline / max(found):5.1f}x "
              f"{candidates[0].name}  (rounds: {', '.join(f'{rate:.1f}' for rate in found)})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("datasets", nargs="*", type=Path)
    parser.add_argument("--candidates", nargs="+", default=list(DEFAULT_CANDIDATES))
    parser.add_argument("--cache", type=Path, default=Path("bench-results/study-cache"))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--whitening", nargs="*", default=[f"{DEFAULT_POWER}:{DEFAULT_SHRINKAGE}"],
                        help="power:shrinkage settings to compare with raw vectors (default: whysim's)")
    parser.add_argument("--poolings", nargs="+", default=list(POOLINGS), choices=list(POOLINGS))
    parser.add_argument("--no-speed", action="store_true", help="skip the model-only speed measurement")
    parser.add_argument("--speed-only", type=int, default=0, metavar="ROUNDS",
                        help="only time the candidates' models, in ROUNDS rounds (best of them), and stop")
    args = parser.parse_args()
    retain_freed_memory()  # as the indexer does: no per-layer page faults
    candidates = [Candidate.parse(text) for text in args.candidates]
    if args.speed_only:
        print_speeds(candidates, args.batch_size, args.speed_only)
        return
    if not args.datasets:
        parser.error("name at least one dataset")
    collections = {dataset: distinct_collection(require_dataset(dataset)) for dataset in args.datasets}
    settings: list[tuple[float, float] | None] = [None]
    settings += [tuple(float(v) for v in text.split(":")) for text in args.whitening]  # type: ignore[misc]
    speeds = {} if args.no_speed else {c.name: round(model_rate(c, args.batch_size), 1) for c in candidates}
    rows = []
    for candidate in candidates:
        for pooling in args.poolings:
            for setting in settings:
                per_set = {}
                judged = []
                for dataset, (paths, labels) in collections.items():
                    raw = cached_vectors(args.cache, dataset, candidate, paths, args.batch_size, args.workers)[pooling]
                    vectors = transformed(raw, setting)
                    per_set[dataset.name] = quality(vectors, labels)
                    judged.append((vectors, labels))
                cut, accuracies = universal_cut(judged)
                whitening = "none" if setting is None else f"{setting[0]:g}/{setting[1]:g}"
                row = {"candidate": candidate.name, "pooling": pooling, "whitening": whitening,
                       "images_per_second": speeds.get(candidate.name), "sets": per_set,
                       "universal_cut": round(cut, 3), "universal_cut_balanced_accuracy": accuracies}
                rows.append(row)
                cells = "  ".join(
                    f"{name}: P@1 {m['p_at_1']:.3f} P@10 {m['p_at_10']:.3f} mAP@10 {m['map_at_10']:.3f} "
                    f"BA@{VerdictRule().cut:g} {m['verdict_balanced_accuracy']:.3f}/best {m['verdict_balanced_accuracy_best']:.3f}"
                    for name, m in per_set.items())
                speed = f"{speeds[candidate.name]:6.1f} img/s" if candidate.name in speeds else ""
                print(f"{candidate.name:>10} {pooling:>4} white {whitening:>7} {speed}  {cells}  "
                      f"universal cut {cut:.2f}", flush=True)
    print(json.dumps({"speeds": speeds, "rows": rows}))


if __name__ == "__main__":
    main()
