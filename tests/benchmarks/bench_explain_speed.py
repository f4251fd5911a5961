"""Explaining 10 hits (all 40 maps and each pair's correspondence) against (a) one forward pass and
(b) pytorch-grad-cam per pair and side.

Ours is the whole explanation the API serves: the maps (Grad-CAM; the contribution maps are timed
too) and every pair's region-to-region correspondence with its top matches.

(a) embeds the query and the 10 hits in one batch, as a search does: the floor for any
    explanation that needs those activations. Goal: explaining costs at most 1.5x (a).
(b) pytorch-grad-cam's GradCAM (test extra `grad-cam`) on the same branch and target layer,
    called once per pair and per side (20 calls) with the cosine target on the partner's
    embedding, plus the one forward pass that yields those embeddings. It gives 20 maps
    where we give 40. Goal: at least 5x faster than (b).
Ours includes upsampling all 40 maps to the input size, since (b) returns upsampled maps, and
picking each pair's top 5 matches.
Each figure is the median of --runs runs after a warm-up, (a) and ours taking turns; ratios come
from the same run. (b) is slow and timed over --runs / 2 runs.

    .venv/bin/python tests/benchmarks/bench_explain_speed.py [DATASET] [--hits 10] [--runs 5]
        [--input-size 224] [--map-layer last|previous] [--skip-reference]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from whysim.indexer.model.loading import ModelRequest, build_branch  # noqa: E402
from whysim.indexer.pipeline.embedding import Embedder  # noqa: E402
from whysim.search.evaluation.image_files import read_image_file  # noqa: E402
from whysim.search.evaluation.pair_sampling import labelled_files  # noqa: E402
from whysim.search.explain.gradcam import CONTRIBUTION, MAP_LAYERS, PairExplainer, upsample_map  # noqa: E402


def median_seconds(works: dict[str, Callable[[], object]], runs: int) -> dict[str, float]:
    """Median wall time of each piece of work; the works take turns within every run, so a
    machine whose load drifts (shared cores) slows them alike and the ratios stay fair."""
    for work in works.values():
        work()  # warm-up: allocator, oneDNN primitive caches
    times: dict[str, list[float]] = {name: [] for name in works}
    for _ in range(runs):
        for name, work in works.items():
            started = time.perf_counter()
            work()
            times[name].append(time.perf_counter() - started)
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", nargs="?", type=Path, default=REPO_ROOT / ".." / "shared" / "datasets" / "flowers")
    parser.add_argument("--hits", type=int, default=10)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--input-size", type=int, default=ModelRequest().input_size)
    parser.add_argument("--skip-reference", action="store_true", help="Leave out (b), the slow part.")
    parser.add_argument("--map-layer", choices=MAP_LAYERS, default="last",
                        help="Grad-CAM's layer: the last feature map, or the previous, twice finer stage.")
    args = parser.parse_args()
    if not args.dataset.is_dir():
        parser.error(f"no dataset at {args.dataset}; pass its path")
    from pytorch_grad_cam import GradCAM

    branch = build_branch(ModelRequest(input_size=args.input_size))
    embedder = Embedder(branch, torch.device("cpu"))
    explainer = PairExplainer(embedder.branch, map_layer=args.map_layer)
    size = branch.input_size
    files = sorted(path for paths in labelled_files(args.dataset.resolve()).values() for path in paths)
    step = max(1, len(files) // (args.hits + 1))
    pixels = torch.stack([read_image_file(path, size).pixels for path in files[::step][:args.hits + 1]])
    query, hits = pixels[0], pixels[1:]

    def explain_with(chosen: PairExplainer) -> Callable[[], None]:
        def run() -> None:
            for explanation in chosen.explain(query, hits):
                explanation.correspondence.top_regions(5)
                for maps in (explanation.query, explanation.hit):
                    upsample_map(maps.factual, size, size)
                    upsample_map(maps.counterfactual, size, size)
        return run

    def forward_pass() -> None:
        embedder(pixels)

    def grad_cam_per_pair_and_side() -> None:
        vectors = torch.from_numpy(embedder(pixels))
        with GradCAM(model=branch, target_layers=[branch.target_layer]) as cam:
            for index in range(1, len(pixels)):
                for image, partner in ((pixels[0], vectors[index]), (pixels[index], vectors[0])):
                    cam(input_tensor=image[None].float(), targets=[lambda out, p=partner: (out * p).sum()])

    print(f"model {branch.card.short_name()}, Grad-CAM at the {args.map_layer} layer, {args.hits} hits, "
          f"{torch.get_num_threads()} threads, median of {args.runs} runs")
    timed = median_seconds({"forward": forward_pass, "grad-cam": explain_with(explainer),
                            "contribution": explain_with(PairExplainer(embedder.branch, method=CONTRIBUTION))},
                           args.runs)
    forward_s, explain_s, contribution_s = timed["forward"], timed["grad-cam"], timed["contribution"]
    if args.skip_reference:
        grad_cam_s = float("nan")
    else:
        grad_cam_s = median_seconds({"reference": grad_cam_per_pair_and_side}, max(1, args.runs // 2))["reference"]
    print(f"(a) one forward pass over {args.hits + 1} images  {forward_s * 1000:8.1f} ms")
    print(f"ours, Grad-CAM maps + correspondence, {args.hits} hits  {explain_s * 1000:8.1f} ms   "
          f"ours / (a) = {explain_s / forward_s:.2f}x (goal <= 1.5x)")
    print(f"ours, contribution maps + correspondence        {contribution_s * 1000:8.1f} ms   "
          f"ours / (a) = {contribution_s / forward_s:.2f}x")
    print(f"(b) pytorch-grad-cam, {2 * args.hits} calls       {grad_cam_s * 1000:8.1f} ms   "
          f"(b) / ours = {grad_cam_s / explain_s:.1f}x faster (goal >= 5x)")


if __name__ == "__main__":
    main()
