"""Where the untrained default model should separate "similar" from "dissimilar" (DEFAULT_THRESHOLD).

Embeds a sample of a class-per-folder collection and compares the cosine similarities of
same-class and different-class pairs. The cut reported is the one maximising *balanced*
accuracy (the mean of the same-class and different-class hit rates), which does not
depend on how many classes a collection has (plain accuracy would: with 5 classes only
20% of pairs are same-class, with 50 classes 2%). To show how far the cut generalises it
is recomputed on every subset of the classes, and checked on generated images (blobs vs
stripes, tests/conftest.py), which share nothing with photos of flowers.

    .venv/bin/python tests/benchmarks/bench_decision_threshold.py [DATASET] [--per-class 150]
"""
from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "tests"))

from conftest import make_picture  # noqa: E402

from whysim.indexer.model.card import DEFAULT_THRESHOLD  # noqa: E402
from whysim.indexer.model.loading import ModelRequest, build_branch  # noqa: E402
from whysim.indexer.pipeline.embedding import Embedder  # noqa: E402
from whysim.indexer.pipeline.reading import model_pixels  # noqa: E402
from whysim.search.evaluation.image_files import read_image_file  # noqa: E402
from whysim.search.evaluation.pair_sampling import labelled_files  # noqa: E402

GRID = np.linspace(-1.0, 1.0, 2001)


def pair_scores(vectors: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cosine similarities of all same-class pairs and all different-class pairs."""
    scores = vectors @ vectors.T
    upper = np.triu_indices(len(vectors), 1)
    same = (labels[:, None] == labels[None, :])[upper]
    return scores[upper][same], scores[upper][~same]


def rates(same: np.ndarray, different: np.ndarray, cut: float) -> tuple[float, float]:
    """(share of same-class pairs called similar, share of different-class pairs called dissimilar)."""
    return float((same >= cut).mean()), float((different < cut).mean())


def balanced_cut(same: np.ndarray, different: np.ndarray) -> tuple[float, float]:
    balanced = np.array([sum(rates(same, different, cut)) / 2 for cut in GRID])
    best = int(balanced.argmax())
    return float(GRID[best]), float(balanced[best])


def equal_error_cut(same: np.ndarray, different: np.ndarray) -> float:
    gaps = np.array([abs(np.subtract(*rates(same, different, cut))) for cut in GRID])
    return float(GRID[int(gaps.argmin())])


def embed_all(embedder: Embedder, pixels: list[torch.Tensor], batch: int = 32) -> np.ndarray:
    chunks = [embedder(torch.stack(pixels[i:i + batch])) for i in range(0, len(pixels), batch)]
    return np.concatenate(chunks).astype(np.float64)


def describe(name: str, values: np.ndarray) -> str:
    q05, q50, q95 = np.quantile(values, [0.05, 0.5, 0.95])
    return f"{name:<22} n={values.size:>8,}  mean {values.mean():.3f}  q05 {q05:.3f}  median {q50:.3f}  q95 {q95:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", nargs="?", type=Path, default=REPO_ROOT / ".." / "shared" / "datasets" / "flowers")
    parser.add_argument("--per-class", type=int, default=150, help="images drawn from each class folder")
    parser.add_argument("--generated", type=int, default=60, help="generated images (half blobs, half stripes)")
    parser.add_argument("--seed", type=int, default=0)
    defaults = ModelRequest()
    parser.add_argument("--backbone", default=defaults.backbone)
    parser.add_argument("--input-size", type=int, default=defaults.input_size)
    parser.add_argument("--pooling", default=defaults.pooling)
    parser.add_argument("--gem-p", type=float, default=defaults.gem_p)
    args = parser.parse_args()
    if not args.dataset.is_dir():
        parser.error(f"no dataset at {args.dataset}; pass its path")

    branch = build_branch(ModelRequest(backbone=args.backbone, input_size=args.input_size,
                                       pooling=args.pooling, gem_p=args.gem_p))
    embedder = Embedder(branch, torch.device("cpu"))
    rng = np.random.default_rng(args.seed)
    groups = labelled_files(args.dataset.resolve())
    paths, labels = [], []
    for label in sorted(groups):
        files = groups[label]
        for index in sorted(rng.choice(len(files), size=min(args.per_class, len(files)), replace=False)):
            paths.append(files[index])
            labels.append(label)
    started = time.perf_counter()
    vectors = embed_all(embedder, [read_image_file(p, branch.input_size).pixels for p in paths])
    print(f"model {branch.card.short_name()}; {len(paths)} images from {args.dataset} "
          f"embedded in {time.perf_counter() - started:.0f} s")
    label_array = np.array(labels)
    same, different = pair_scores(vectors, label_array)
    print(describe("same-class pairs", same))
    print(describe("different-class pairs", different))
    cut, balanced = balanced_cut(same, different)
    print(f"balanced-accuracy cut {cut:.3f} (balanced accuracy {balanced:.3f}); "
          f"equal-error cut {equal_error_cut(same, different):.3f}")
    classes = sorted(groups)
    subset_size = max(2, len(classes) - 2)
    subset_cuts = []
    for subset in itertools.combinations(classes, subset_size):
        members = np.isin(label_array, subset)
        subset_cuts.append(balanced_cut(*pair_scores(vectors[members], label_array[members]))[0])
    print(f"balanced-accuracy cut over the {len(subset_cuts)} subsets of {subset_size} classes: "
          f"min {min(subset_cuts):.3f}, median {np.median(subset_cuts):.3f}, max {max(subset_cuts):.3f}")

    kinds = np.array(["blobs", "stripes"] * (args.generated // 2))
    pictures = [model_pixels(make_picture(1000 + i, size=(320, 240), kind=str(kind)), branch.input_size)
                for i, kind in enumerate(kinds)]
    generated_same, generated_different = pair_scores(embed_all(embedder, pictures), kinds)
    print(describe("generated same-kind", generated_same))
    print(describe("generated diff-kind", generated_different))
    for name, candidate in (("balanced cut", cut), ("DEFAULT_THRESHOLD", DEFAULT_THRESHOLD)):
        flower_rates = rates(same, different, candidate)
        generated_rates = rates(generated_same, generated_different, candidate)
        print(f"{name} {candidate:.3f}: same/different called right: flowers {flower_rates[0]:.3f}/"
              f"{flower_rates[1]:.3f}, generated {generated_rates[0]:.3f}/{generated_rates[1]:.3f}")


if __name__ == "__main__":
    main()
