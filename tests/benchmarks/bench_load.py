"""Load on loopback with Locust (headless): mixed load, and fairness under a flooding client.

Indexes the photos of --dataset once (default: the bundled samples/flowers; cached in
--work-dir) with the real `whysim index`, then against `whysim serve --production`:

  mixed     --clients users (8) for --seconds (60): search by id, search by upload (each upload
            a distinct file) and explanations of random pairs, one third each, back to back.
            Rate limits off (--no-rate-limits): these users are load generators, not people.
  fairness  with the default rate limits and --trusted-proxies 1 (every Locust user has its own
            X-Forwarded-For address): --searchers users (4) searching by id for --seconds alone
            (baseline), then the same with one more user flooding /api/explain, same server;
            --runs such pairs (3). In every pair the flooder must get 429s, the searchers no
            error and a p95 within 2x of the baseline taken just before.

Locust's CSV stats go to --out (bench-results/load-*). Prints one table per run and the checks;
exits with status 1 when a check fails.

    .venv/bin/python tests/benchmarks/bench_load.py [--clients 8] [--seconds 60] [--runs 3] [--only mixed|fairness]
"""
from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from bench_search_latency import log
from bench_support import REPO_ROOT
from http_load import multipart_image, whysim_server
from locust_run import LocustRun, run_locust, write_workload

SAMPLES = REPO_ROOT / "samples" / "flowers"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


def photo_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


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
    subprocess.run([sys.executable, "-c", "from whysim.webui.cli import main; main()", "index", str(work / "photos"),
                    "--data-dir", str(data_dir), "--input-size", str(input_size), "--no-progress"], check=True)
    marker.write_text(json.dumps(wanted))
    return data_dir


def indexed_ids(data_dir: Path) -> list[int]:
    with sqlite3.connect(f"file:{data_dir / 'catalog.sqlite3'}?mode=ro", uri=True) as connection:
        return [image_id for (image_id,) in connection.execute("SELECT id FROM images WHERE status = 'indexed'")]


def warm_up(base_url: str, ids: list[int], photo: Path) -> None:
    """Loads the model (first upload and explanation) before any clock starts."""
    body, content_type = multipart_image(photo.read_bytes(), 5)
    urllib.request.urlopen(urllib.request.Request(f"{base_url}/api/search", data=body,
                                                  headers={"Content-Type": content_type}), timeout=300).read()
    urllib.request.urlopen(f"{base_url}/api/explain?query={ids[0]}&hit={ids[1]}", timeout=300).read()


def mixed(data_dir: Path, workload: Path, args: argparse.Namespace, ids: list[int], photo: Path) -> bool:
    with whysim_server(data_dir, "--production", "--threads", str(args.threads), "--no-rate-limits",
                       "--no-access-log") as server:
        warm_up(server.base_url, ids, photo)
        run = run_locust(server.base_url, workload, args.out / "load-mixed", args.clients, args.seconds,
                         ("MixedUser",), args.max_requests)
    total = run.stats["Aggregated"]
    print(f"\nmixed: {args.clients} Locust users x {args.seconds:g} s against whysim serve --production "
          f"(waitress, {args.threads} threads), rate limits off\n{run.table()}")
    print(f"  {total.requests} requests, {total.rps:.1f} per second, {total.failures} failures")
    report_failures(run)
    return total.failures == 0


def fairness(data_dir: Path, workload: Path, args: argparse.Namespace, ids: list[int], photo: Path) -> bool:
    """--runs pairs of runs on one server: the searchers alone, then with the flooder."""
    passed = True
    with whysim_server(data_dir, "--production", "--threads", str(args.threads), "--trusted-proxies", "1",
                       "--no-access-log") as server:
        warm_up(server.base_url, ids, photo)
        for run in range(1, args.runs + 1):
            alone = run_locust(server.base_url, workload, args.out / f"load-fair-baseline-{run}", args.searchers,
                               args.seconds, ("Searcher",), args.max_requests)
            flooded = run_locust(server.base_url, workload, args.out / f"load-fair-flooded-{run}", args.searchers + 1,
                                 args.seconds, ("Searcher", "Flooder"), args.max_requests)
            passed &= fairness_checks(run, alone, flooded, args)
    return passed


def fairness_checks(run: int, alone: LocustRun, flooded: LocustRun, args: argparse.Namespace) -> bool:
    print(f"\nfairness run {run}, baseline: {args.searchers} searchers by id, {args.seconds:g} s, default rate "
          f"limits\n{alone.table()}")
    print(f"\nfairness run {run}: the same {args.searchers} searchers + 1 client flooding /api/explain\n"
          f"{flooded.table()}")
    before, after = alone.stats["search by id"], flooded.stats["search by id"]
    flood = flooded.stats["flood explain"]
    refused = flooded.failures.get(("flood explain", "HTTP 429"), 0)
    ratio = after.p95_ms / before.p95_ms
    checks = {
        f"flooder got 429s: {refused} of its {flood.requests} requests ({flood.requests - flood.failures} answered)":
            refused > 0,
        f"searchers' errors with the flooder: {after.failures} of {after.requests}": after.failures == 0,
        f"searchers' p95 {after.p95_ms:.0f} ms with the flooder vs {before.p95_ms:.0f} ms alone: {ratio:.2f}x (<= 2)":
            ratio <= 2.0,
    }
    for text, passed in checks.items():
        print(f"  [{'ok' if passed else 'FAILED'}] {text}")
    report_failures(flooded, ignore=("flood explain", "HTTP 429"))
    return all(checks.values()) and alone.stats["Aggregated"].failures == 0


def report_failures(run: LocustRun, ignore: tuple[str, str] | None = None) -> None:
    for (name, message), count in run.failures.most_common(5):
        if (name, message) != ignore:
            print(f"  failure x{count}: {name}: {message}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", type=Path, default=SAMPLES, help="photos to index (class folders)")
    parser.add_argument("--images", type=int, default=600, help="at most this many photos are indexed")
    parser.add_argument("--clients", type=int, default=8, help="Locust users of the mixed run")
    parser.add_argument("--searchers", type=int, default=4, help="users searching by id in the fairness run")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--runs", type=int, default=3, help="pairs of fairness runs (baseline, then flooded)")
    parser.add_argument("--max-requests", type=int, default=200_000, help="each Locust run stops after these")
    parser.add_argument("--threads", type=int, default=8, help="request threads of the production server")
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--only", choices=("mixed", "fairness"))
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "bench-results")
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "whysim-bench-load")
    args = parser.parse_args()

    photos = photo_files(args.dataset)[:args.images]
    data_dir = build_index(args.work_dir, photos, args.input_size)
    ids = indexed_ids(data_dir)
    workload = write_workload(args.work_dir / "workload.json", ids, photos)
    log(f"{len(ids)} indexed images from {args.dataset}; uploads are random crops of them")
    passed = True
    if args.only in (None, "mixed"):
        passed &= mixed(data_dir, workload, args, ids, photos[0])
    if args.only in (None, "fairness"):
        passed &= fairness(data_dir, workload, args, ids, photos[0])
    print(f"\nLocust CSV stats: {args.out}/load-*_stats.csv")
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
