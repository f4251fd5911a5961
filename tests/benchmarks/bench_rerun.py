"""Re-running `whysim index` on an unchanged collection: how long it takes, and that it embeds nothing.

Indexes DATASET into DATA_DIR first when that directory holds no index yet (or reuse the one
bench_index_throughput.py --keep DIR left), then runs the same command again `--runs` times.
Exits with status 1 if any re-run embedded an image.

    .venv/bin/python tests/benchmarks/bench_rerun.py [DATASET] [--data-dir DIR] [--runs 3]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

from bench_support import default_dataset, require_dataset, run_whysim


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", nargs="?", type=Path, default=default_dataset())
    parser.add_argument("--data-dir", type=Path, default=None, help="an existing or new data directory")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    dataset = require_dataset(args.dataset)
    data_dir = args.data_dir or Path(tempfile.mkdtemp(prefix="whysim-rerun-"))

    if not (data_dir / "vectors.faiss").exists():
        seconds, report = run_whysim("index", dataset, "--data-dir", data_dir, "--no-progress")
        print(f"initial index:  {seconds:7.1f} s  ({report['indexed']} indexed)", flush=True)
    reruns = []
    for run in range(1, args.runs + 1):
        seconds, report = run_whysim("index", dataset, "--data-dir", data_dir, "--no-progress")
        reruns.append({"seconds": round(seconds, 2), "indexed": report["indexed"], "unchanged": report["unchanged"],
                       "inside_seconds": report["seconds"]})
        print(f"re-run {run}:       {seconds:7.2f} s wall ({report['seconds']:.2f} s inside whysim), "
              f"indexed {report['indexed']}, unchanged {report['unchanged']}", flush=True)
    startup, stats = run_whysim("stats", "--data-dir", data_dir)
    print(f"for scale: `whysim stats` (start-up + catalog open) takes {startup:.2f} s; {stats['images']} images")
    print(json.dumps({"dataset": str(dataset), "reruns": reruns, "stats_seconds": round(startup, 2)}))
    if args.data_dir is None:
        shutil.rmtree(data_dir, ignore_errors=True)
    if any(run["indexed"] for run in reruns):
        sys.exit("FAIL: a re-run on an unchanged collection embedded images")


if __name__ == "__main__":
    main()
