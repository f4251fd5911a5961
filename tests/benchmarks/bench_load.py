"""Load on loopback: N concurrent clients for T seconds against `whysim serve --production`,
mixing search by id, search by upload (every upload distinct) and explanations of random pairs.

Indexes --images real photos once (cached in --work-dir) with the real `whysim index`, then
runs the same load, with the same seed, against the production server (waitress) and, as the
baseline measured in the same run, against the development server (Flask's threaded server).
Prints throughput, p50/p95 per kind and the error count for each, and the ratios.

    .venv/bin/python tests/benchmarks/bench_load.py [--clients 8] [--seconds 60] [--dataset DIR]
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_search_latency import DEFAULT_PHOTOS, log, photo_files
from http_load import KINDS, LoadResult, Workload, run_load, whysim_server


def build_index(work: Path, photos: list[Path], input_size: int) -> Path:
    """Copies the photos (class folders kept) and runs `whysim index` on them, unless already done."""
    marker = work / "built.json"
    wanted = {"photos": [str(p) for p in photos], "input_size": input_size}
    data_dir = work / "data"
    if marker.exists() and json.loads(marker.read_text()) == wanted:
        log(f"reusing {data_dir}")
        return data_dir
    shutil.rmtree(work, ignore_errors=True)
    for index, photo in enumerate(photos):
        target = work / "photos" / photo.parent.name / f"{index:05d}{photo.suffix.lower()}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(photo, target)
    subprocess.run([sys.executable, "-c", "from webui.cli import main; main()", "index", str(work / "photos"),
                    "--data-dir", str(data_dir), "--input-size", str(input_size)], check=True)
    marker.write_text(json.dumps(wanted))
    return data_dir


def indexed_ids(data_dir: Path) -> list[int]:
    with sqlite3.connect(f"file:{data_dir / 'catalog.sqlite3'}?mode=ro", uri=True) as connection:
        return [image_id for (image_id,) in connection.execute("SELECT id FROM images WHERE status = 'indexed'")]


def measure(data_dir: Path, workload: Workload, args: argparse.Namespace, *serve_options: str) -> LoadResult:
    with whysim_server(data_dir, *serve_options) as server:
        run_load(server.port, workload, clients=2, seconds=args.warmup, seed=99)  # loads the model, warms caches
        return run_load(server.port, workload, args.clients, args.seconds, seed=args.seed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, default=DEFAULT_PHOTOS)
    parser.add_argument("--images", type=int, default=600, help="photos indexed")
    parser.add_argument("--uploads", type=int, default=200, help="distinct photos uploaded as queries")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--warmup", type=float, default=5)
    parser.add_argument("--threads", type=int, default=8, help="request threads of the production server")
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-baseline", action="store_true", help="skip the development-server run")
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "whysim-bench-load")
    args = parser.parse_args()

    photos = photo_files(args.dataset)
    random.Random(0).shuffle(photos)
    indexed, queries = photos[:args.images], photos[args.images:args.images + args.uploads] or photos
    data_dir = build_index(args.work_dir, indexed, args.input_size)
    workload = Workload(indexed_ids(data_dir), [p.read_bytes() for p in queries])
    log(f"{len(workload.image_ids)} indexed images, {len(workload.uploads)} distinct uploads; "
        f"{args.clients} clients for {args.seconds:.0f} s")

    production = measure(data_dir, workload, args, "--production", "--threads", str(args.threads))
    print(f"\nwhysim serve --production (waitress, {args.threads} threads)\n{production.table()}")
    if args.no_baseline:
        return
    development = measure(data_dir, workload, args)
    print(f"\nbaseline: whysim serve (Flask development server, threaded)\n{development.table()}")
    print("\nproduction / development:")
    print(f"  throughput {production.throughput / development.throughput:.2f}x")
    for kind in KINDS:
        ours, theirs = production.by_kind[kind], development.by_kind[kind]
        print(f"  {kind:<14} p50 {ours.percentile(50) / theirs.percentile(50):.2f}x   "
              f"p95 {ours.percentile(95) / theirs.percentile(95):.2f}x")


if __name__ == "__main__":
    main()
