"""The price of Ray on one machine: `whysim index --engine ray` against the built-in pipeline, same run.

Copies --per-class images of each class folder of DATASET (default ../shared/datasets/flowers)
into a scratch directory, then indexes it into fresh data directories, each in a fresh
`whysim index` process with the default model and input size: built-in, then --engine ray
(which starts its own local Ray cluster on this machine's cores), then built-in again (the
two built-in runs bracket the Ray run, so their spread shows how much the machine's load
moved). Prints, for each, the embedding rate the report gives (images/s from the first
embedded image to the last write) and the end-to-end wall time (process start-up, Ray's
start-up, model loading, scan, everything), and the ratios Ray / built-in.

    .venv/bin/python tests/benchmarks/bench_ray_engine.py [DATASET] [--per-class 200]
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

from bench_support import default_dataset, require_dataset, run_whysim


def sample(source: Path, target: Path, per_class: int) -> int:
    copied = 0
    for folder in sorted(p for p in source.iterdir() if p.is_dir()):
        (target / folder.name).mkdir(parents=True)
        for path in sorted(folder.iterdir())[:per_class]:
            shutil.copyfile(path, target / folder.name / path.name)
            copied += 1
    return copied


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", nargs="?", type=Path, default=default_dataset())
    parser.add_argument("--per-class", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="whysim-ray-bench-") as scratch:
        work = Path(scratch)
        images = sample(require_dataset(args.dataset), work / "photos", args.per_class)
        runs = []
        for name, extra in (("built-in", ()), ("ray", ("--engine", "ray")), ("built-in again", ())):
            wall, report = run_whysim("index", work / "photos", "--data-dir", work / name.replace(" ", "-"),
                                      "--no-progress", *extra)
            assert report["indexed"] + report["duplicates"] + report["failed"] == images, report
            runs.append((name, report["images_per_second"], wall))
    print(f"{images} images from {args.dataset} ({args.per_class} per class), default model, one machine")
    print(f"{'run':<15} {'embed images/s':>14} {'wall s':>8}")
    for name, rate, wall in runs:
        print(f"{name:<15} {rate:>14.1f} {wall:>8.1f}")
    builtin_rate = (runs[0][1] + runs[2][1]) / 2
    builtin_wall = (runs[0][2] + runs[2][2]) / 2
    print(f"ray / built-in: embedding rate {runs[1][1] / builtin_rate:.2f}x, "
          f"end-to-end images/s {(images / runs[1][2]) / (images / builtin_wall):.2f}x "
          f"(built-in runs {runs[0][1]:.1f} and {runs[2][1]:.1f} images/s)")


if __name__ == "__main__":
    main()
