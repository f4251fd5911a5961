"""Peak resident memory (RSS) of `whysim index`, `evaluate`, `train` and `serve` under load, per
collection, at the default settings: what a user with 8 GB needs.

Each command is a fresh process; its peak is the kernel's high-water mark (ru_maxrss from wait4,
what `/usr/bin/time -v` prints as "Maximum resident set size"; VmHWM for the server, read while it
still runs after the Locust mixed load). `train` runs one epoch on the first --train-per-class
photos of each class (the feature cache pass, where its memory went; `--train-per-class 0
--train-epochs 30`: the whole collection at the defaults); serve runs on the index
that `index` built, with the mixed Locust users of bench_load.py.

    .venv/bin/python tests/benchmarks/bench_memory.py ../shared/datasets/rooms ../shared/datasets/flowers \\
        [--runtime auto] [--only index,evaluate,train,serve] [--serve-seconds 30]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_load import indexed_ids, photo_files, warm_up
from bench_support import require_dataset
from http_load import whysim_server
from locust_run import run_locust, write_workload

COMMANDS = ("index", "evaluate", "train", "serve")


class CommandFailed(RuntimeError):
    pass


def peak_mb_of(*args: object) -> float:
    """Runs `whysim ARGS` and returns its peak RSS in MB; CommandFailed with its message on failure."""
    command = [sys.executable, "-c", "from whysim.webui.cli import main; main()", *map(str, args)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert process.stderr is not None
    errors = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise CommandFailed(errors.decode().strip().splitlines()[-1] if errors.strip() else str(process.returncode))
    return usage.ru_maxrss / 1024


def train_subset(dataset: Path, target: Path, per_class: int) -> Path:
    for folder in sorted(p for p in dataset.iterdir() if p.is_dir()):
        for photo in photo_files(folder)[:per_class]:
            (target / folder.name).mkdir(parents=True, exist_ok=True)
            shutil.copyfile(photo, target / folder.name / photo.name)
    return target


def serve_peak_mb(data_dir: Path, dataset: Path, runtime: str, seconds: float, out: Path) -> tuple[float, int]:
    ids = indexed_ids(data_dir)
    photos = photo_files(dataset)
    workload = write_workload(out / "workload.json", ids, photos[:200])
    with whysim_server(data_dir, "--production", "--no-rate-limits", "--no-access-log", "--runtime", runtime) as server:
        warm_up(server.base_url, ids, photos[0])
        run = run_locust(server.base_url, workload, out / "load-memory", 8, seconds, ("MixedUser",), 200_000)
        status = Path(f"/proc/{server.process.pid}/status").read_text()
    peak_kb = int(status.split("VmHWM:")[1].split()[0])
    return peak_kb / 1024, run.stats["Aggregated"].requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("datasets", nargs="+", type=Path)
    parser.add_argument("--runtime", default="auto")
    parser.add_argument("--only", default=",".join(COMMANDS))
    parser.add_argument("--train-per-class", type=int, default=12, help="0: train on the whole collection")
    parser.add_argument("--train-epochs", type=int, default=1)
    parser.add_argument("--serve-seconds", type=float, default=30)
    parser.add_argument("--work-dir", type=Path, default=None)
    args = parser.parse_args()
    wanted = args.only.split(",")
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="whysim-bench-memory-"))
    results: dict[str, dict[str, float]] = {}
    for dataset in map(require_dataset, args.datasets):
        scratch = work / dataset.name
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        data_dir, row = scratch / "data", {}
        common = ["--data-dir", data_dir, "--no-progress", "--runtime", args.runtime]
        if "index" in wanted or "serve" in wanted:
            row["index"] = peak_mb_of("index", dataset, *common)
        if "evaluate" in wanted:
            row["evaluate"] = peak_mb_of("evaluate", dataset, *common, "--json")
        if "train" in wanted:
            photos = (train_subset(dataset, scratch / "train-photos", args.train_per_class)
                      if args.train_per_class else dataset)
            try:
                row["train"] = peak_mb_of("train", photos, "--data-dir", scratch / "train", "--epochs",
                                          args.train_epochs, "--no-progress")
            except CommandFailed as exc:  # e.g. rooms: two photos per room leave no validation split
                print(f"{dataset.name}: whysim train did not run: {exc}", flush=True)
        if "serve" in wanted:
            row["serve"], requests = serve_peak_mb(data_dir, dataset, args.runtime, args.serve_seconds, scratch)
            row["serve_requests"] = requests
        results[dataset.name] = row
        print(f"{dataset.name}: " + ", ".join(f"{name} {mb:,.0f} MB" for name, mb in row.items()
                                               if name in COMMANDS)
              + (f" (serve after {row['serve_requests']} mixed requests)" if "serve" in row else ""), flush=True)
    print(json.dumps({"runtime": args.runtime, "train_per_class": args.train_per_class,
                      "peak_rss_mb": {name: {k: round(v) for k, v in row.items()} for name, row in results.items()}}))
    if args.work_dir is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
