"""Retrieval quality of the untrained default model: input size x pooling, leave-one-out.

For each input size the images are decoded by the indexer's own read stage and run once
through the backbone up to its Grad-CAM target layer; every pooling variant is computed
from those same feature maps, so the table compares pooling on identical inputs.
Labels are the class folders. Prints one row per (size, pooling) with P@1, P@10,
mAP@10 and the embedding rate, then a JSON line with everything.

    .venv/bin/python tests/benchmarks/eval_default_model.py [DATASET] [--sizes 224 320]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from bench_support import default_dataset, pooled_vectors, require_dataset

import whysim.indexer  # noqa: F401  first: it sets the OpenMP wait policy before torch loads
from whysim.indexer.evaluation.retrieval_metrics import retrieval_metrics
from whysim.indexer.model.backbones import IMAGENET_MEAN_255, IMAGENET_STD_255
from whysim.indexer.model.loading import ModelRequest, build_branch
from whysim.indexer.model.pooling import AveragePool, GeMPool, MaxPool
from whysim.indexer.scanning import scan_collection

POOLINGS: dict[str, torch.nn.Module] = {
    "avg": AveragePool(), "gem2": GeMPool(2.0), "gem3": GeMPool(3.0), "gem4": GeMPool(4.0), "max": MaxPool(),
}


def pooled_embeddings(root: Path, paths: list[str], size: int, batch_size: int, workers: int,
                      imagenet_scaling: bool = False) -> tuple[dict[str, np.ndarray], float]:
    """One backbone pass at `size`; returns L2-normalised vectors per pooling and images/s."""
    branch = build_branch(ModelRequest(input_size=size, pooling="avg")).to(memory_format=torch.channels_last)
    if imagenet_scaling:  # the torchvision convention, instead of Lite0's own [-1, 1]
        branch.input_mean.copy_(torch.tensor(IMAGENET_MEAN_255).view(1, 3, 1, 1))
        branch.input_std.copy_(torch.tensor(IMAGENET_STD_255).view(1, 3, 1, 1))
    started = time.perf_counter()
    vectors = pooled_vectors(branch, [root / path for path in paths], size, batch_size, workers, POOLINGS, f"{size}px")
    rate = len(paths) / (time.perf_counter() - started)
    return vectors, rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", nargs="?", type=Path, default=default_dataset())
    parser.add_argument("--sizes", type=int, nargs="+", default=[224, 320])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--imagenet-scaling", action="store_true",
                        help="normalise with ImageNet mean/std instead of Lite0's [-1, 1] (for comparison)")
    args = parser.parse_args()

    files = list(scan_collection(require_dataset(args.dataset)))
    paths = [f.path for f in files]
    labels = [f.label for f in files]
    scaling = "ImageNet mean/std" if args.imagenet_scaling else "the backbone's own"
    print(f"{len(paths)} images, {len(set(labels))} classes in {args.dataset}; leave-one-out, cosine; "
          f"{scaling} input scaling")
    print(f"{'size':>4} {'pooling':>7} {'P@1':>6} {'P@10':>6} {'mAP@10':>7} {'img/s':>6}")
    rows = []
    for size in args.sizes:
        vectors, rate = pooled_embeddings(args.dataset, paths, size, args.batch_size, args.workers,
                                          args.imagenet_scaling)
        for name, matrix in vectors.items():
            metrics = retrieval_metrics(matrix, labels, ks=(1, 10))
            rows.append({"size": size, "pooling": name, "p_at_1": round(metrics["p_at_1"], 4),
                         "p_at_10": round(metrics["p_at_10"], 4), "map_at_10": round(metrics["map_at_10"], 4),
                         "images_per_second": round(rate, 1)})
            print(f"{size:>4} {name:>7} {metrics['p_at_1']:6.3f} {metrics['p_at_10']:6.3f} "
                  f"{metrics['map_at_10']:7.3f} {rate:6.1f}", flush=True)
    print(json.dumps({"dataset": str(args.dataset), "images": len(paths), "rows": rows}))


if __name__ == "__main__":
    main()
