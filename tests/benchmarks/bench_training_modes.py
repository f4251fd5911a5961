"""What does one training epoch cost, with cached backbone features and with images?

    .venv/bin/python tests/benchmarks/bench_training_modes.py [DATASET] [--per-class 40]
        [--stages 2] [--full] [--input-size N] [--workers 2]

Takes the first --per-class images of each class folder and times, on the same images,
model (whysim train's default head) and batches (SupCon, class-balanced, 64 images per step):
  - caching: computing the frozen backbone's features for 3 views per image (once);
  - cached epoch: training the pooling + head on the cached features;
  - image epoch, frozen backbone: decode + augment + backbone forward on every step;
  - image epoch, last --stages backbone modules trainable (fine-tune);
  - with --full, every backbone module trainable.
Prints seconds per epoch for the subset, the same projected to DATASET's train split
(70% of its images), and each mode's ratio to the cached epoch measured in the same run.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from whysim.indexer.model.loading import DEFAULT_INPUT_SIZE, ModelRequest, build_branch
from whysim.indexer.training.collection import LabelledCollection, scan_labelled
from whysim.indexer.training.features_cache import FeatureCache, fill_cache
from whysim.indexer.training.objectives import SupConObjective
from whysim.indexer.training.run import TrainOptions
from whysim.indexer.training.sources import CachedFeatures, ImageFiles, InputSource
from whysim.indexer.training.trainable import TrainableBranch
from whysim.indexer.training.trainer import LoopSettings, Trainer, build_optimizer
from whysim.indexer.training.views import DEFAULT_VIEWS

REPO_ROOT = Path(__file__).resolve().parents[2]


def default_dataset() -> Path:
    for candidate in (REPO_ROOT.parent / "shared" / "datasets" / "flowers",
                      REPO_ROOT.parent.parent / "shared" / "datasets" / "flowers"):
        if candidate.is_dir():
            return candidate
    return REPO_ROOT.parent / "shared" / "datasets" / "flowers"


def first_per_class(collection: LabelledCollection, count: int) -> LabelledCollection:
    taken: dict[str, int] = {}
    chosen = []
    for image in sorted(collection.images, key=lambda i: i.path):
        if taken.get(image.label, 0) < count:
            taken[image.label] = taken.get(image.label, 0) + 1
            chosen.append(image)
    return LabelledCollection(collection.root, tuple(chosen))


def trainable(request: ModelRequest, stages: int) -> TrainableBranch:
    """Set up as `whysim train` does on CPU (channels_last, freed memory kept)."""
    return TrainableBranch(build_branch(request), trainable_stages=stages).to(torch.device("cpu"))


def epoch_seconds(model: TrainableBranch, source: InputSource, labels: np.ndarray) -> float:
    objective = SupConObjective(labels, batch_size=64, images_per_class=8, temperature=0.1, seed=0)
    trainer = Trainer(model, objective, source, source, labels, LoopSettings(progress=False))
    optimizer = build_optimizer(model, LoopSettings())
    batches = objective.batches(1)
    started = time.perf_counter()
    for batch, inputs in zip(batches, source.inputs([b.items for b in batches], True, np.random.default_rng(1))):
        trainer.train_step(optimizer, batch, inputs)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", nargs="?", type=Path, default=default_dataset())
    parser.add_argument("--per-class", type=int, default=40)
    parser.add_argument("--stages", type=int, default=2)
    parser.add_argument("--full", action="store_true", help="also time a full fine-tune")
    parser.add_argument("--input-size", type=int, default=DEFAULT_INPUT_SIZE)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    if not args.dataset.is_dir():
        sys.exit(f"dataset not found: {args.dataset} (pass its path as the first argument)")
    everything = scan_labelled(args.dataset, progress=False)
    subset = first_per_class(everything, args.per_class)
    classes = sorted(set(subset.labels))
    labels = np.array([classes.index(label) for label in subset.labels])
    paths = [subset.root / image.path for image in subset.images]
    projected = 0.7 * len(everything) / len(subset)
    defaults = TrainOptions()
    request = ModelRequest(input_size=args.input_size, head_dim=defaults.head_dim, head=defaults.head)
    print(f"{len(subset)} images ({args.per_class} per class), input {args.input_size}px, {defaults.head} head, "
          f"{torch.get_num_threads()} torch threads; projection x{projected:.1f} to {args.dataset.name}'s train split")

    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="whysim-bench-cache-") as tmp:
        model = trainable(request, stages=0)
        cache = FeatureCache(Path(tmp))
        started = time.perf_counter()
        fill_cache(cache, [(image.sha256, subset.root / image.path) for image in subset.images], model.trunk_maps,
                   args.input_size, DEFAULT_VIEWS, 32, args.workers, progress=False)
        results["cache_s_per_image"] = (time.perf_counter() - started) / len(subset)
        cached = CachedFeatures(cache.reader(), np.array([cache.row_of[i.sha256] for i in subset.images]))
        results["cached_epoch_s"] = epoch_seconds(model, cached, labels)
    modes = [("images_frozen_epoch_s", 0), (f"images_last{args.stages}_epoch_s", args.stages)]
    if args.full:
        modes.append(("images_full_epoch_s", 10**6))
    for name, stages in modes:
        model = trainable(request, stages)
        results[name] = epoch_seconds(model, ImageFiles(paths, args.input_size, args.workers), labels)

    baseline = results["cached_epoch_s"]
    print(f"  {'feature cache (once, 3 views)':<34} {results['cache_s_per_image'] * len(subset):8.1f} s   "
          f"projected {results['cache_s_per_image'] * len(subset) * projected / 60:6.1f} min")
    for name, seconds in results.items():
        if name.endswith("_epoch_s"):
            print(f"  {name:<34} {seconds:8.2f} s   projected {seconds * projected / 60:6.1f} min/epoch   "
                  f"x{seconds / baseline:7.1f} vs cached epoch")
    print(json.dumps({"images": len(subset), "input_size": args.input_size, "projection": projected, **results}))


if __name__ == "__main__":
    main()
