"""Indexing throughput: `whysim index` end to end against the model alone, in the same run.

The model-only rate is the ceiling: the same branch, batch size and input size as the CLI,
fed pre-decoded uint8 batches through the indexer's own Embedder (channels_last), so it
times nothing but the forward passes. It is measured before and after the end-to-end run
(their mean is the baseline; their spread shows how much the machine's load moved).
Both are measured for each runtime of --runtimes (PyTorch eager, then the default `auto`), and
the last one's rates are given as ratios to the first's ("speed-up"). Before/after rates of two
runtimes are minutes apart, so the model-only speed-up is also measured in --rounds interleaved
rounds (bench_runtimes.paired_rounds: each round times both on the same batch, the speed-up is
the median of the per-round ratios), which a change in the machine's load hits alike; so is
`whysim index` end to end, --end-to-end-rounds times each, alternating, into fresh data
directories (converted models cached, as on every run after a data directory's first).
End to end is the wall time of a fresh `whysim index` process into an empty data directory:
start-up, model loading, scan, hashing, decoding, embedding and every catalog/FAISS write.
A runtime that converts the model (OpenVINO, ONNX Runtime) does so once per data directory;
the model-only run converts into the data directory's cache first and prints what that took,
so the end-to-end time is that of every run after the first (pass --first-run to time the
conversion inside the end-to-end run instead).

Both are also given as CPU milliseconds per image (user + system, all threads and worker
processes). On a busy machine wall-clock rates move with other people's load; CPU time per
image hardly does, so the CPU ratio says what the pipeline costs on top of the model.
The fixed cost of a run (interpreter, imports, catalog migration, model loading, the first
forward pass of a batch shape) is measured too, as `whysim index` over one batch of the
collection's images less the model-only cost of that batch, and the per-image figures are
also given without it: on a few hundred photos those seconds are a visible part of the whole.

    .venv/bin/python tests/benchmarks/bench_index_throughput.py [DATASET] [--workers N] [--keep DIR] \
        [--runtimes torch,auto] [--first-run] [--rounds 8] [--end-to-end-rounds 3]
"""
from __future__ import annotations

import argparse
import itertools
import json
import resource
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from bench_runtimes import paired_rounds
from bench_support import default_dataset, require_dataset, run_whysim

import whysim.indexer  # noqa: F401  first: it sets the OpenMP wait policy before torch loads
from whysim.indexer.datadir import DataDir
from whysim.indexer.imaging import DEFAULT_MAX_PIXELS
from whysim.indexer.model.card import DEFAULT_INPUT_SIZE
from whysim.indexer.model.loading import ModelRequest, build_branch
from whysim.indexer.pipeline.embedding import Embedder
from whysim.indexer.pipeline.options import CPU_BATCH_SIZE
from whysim.indexer.pipeline.reading import ReadRequest, read_image_file
from whysim.indexer.scanning import scan_collection


@dataclass(frozen=True)
class Measurement:
    images: int
    seconds: float
    cpu_seconds: float

    @property
    def rate(self) -> float:
        return self.images / self.seconds

    @property
    def cpu_ms_per_image(self) -> float:
        return 1000 * self.cpu_seconds / self.images


def cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def model_only(dataset: Path, input_size: int, batch_size: int, batches: int, runtime: str,
               cache_dir: Path | None = None) -> tuple[Measurement, float]:
    """The embedder alone on pre-decoded batches (one warm-up batch not timed), and the seconds
    its runtime took to convert the model into `cache_dir` (0 when cached or not converted)."""
    embedder = Embedder(build_branch(ModelRequest(input_size=input_size)), torch.device("cpu"), runtime, cache_dir)
    conversion = float(getattr(embedder.session, "conversion_seconds", 0.0))
    needed = batch_size * (batches + 1)
    files = list(itertools.islice(scan_collection(dataset), needed))
    decoded = [read_image_file(ReadRequest(i, dataset / f.path), input_size, DEFAULT_MAX_PIXELS).pixels
               for i, f in enumerate(files)]
    pixels = list(itertools.islice(itertools.cycle([p for p in decoded if p is not None]), needed))
    stacks = [torch.stack(pixels[i:i + batch_size]) for i in range(0, needed, batch_size)]
    embedder(stacks[0])
    cpu_before, started = cpu_seconds(resource.RUSAGE_SELF), time.perf_counter()
    for stack in stacks[1:]:
        embedder(stack)
    return Measurement(batch_size * batches, time.perf_counter() - started,
                       cpu_seconds(resource.RUSAGE_SELF) - cpu_before), conversion


def paired_model_only(dataset: Path, input_size: int, batch_size: int, runtimes: list[str],
                      rounds: int) -> dict[str, dict[str, object]]:
    """The model-only rates of `runtimes` in interleaved rounds (conversion into a scratch cache, not timed)."""
    files = list(itertools.islice(scan_collection(dataset), batch_size))
    decoded = [read_image_file(ReadRequest(i, dataset / f.path), input_size, DEFAULT_MAX_PIXELS).pixels
               for i, f in enumerate(files)]
    batch = torch.stack([p for p in decoded if p is not None])
    with tempfile.TemporaryDirectory(prefix="whysim-bench-paired-") as cache:
        embedders = {runtime: Embedder(build_branch(ModelRequest(input_size=input_size)), torch.device("cpu"), runtime,
                                       Path(cache)) for runtime in runtimes}
        for embedder in embedders.values():
            embedder(batch)  # warm-up
        return paired_rounds(embedders, batch, 2, rounds)


def paired_end_to_end(dataset: Path, input_size: int, options: list[object], runtimes: list[str],
                      rounds: int) -> dict[str, object]:
    """`whysim index` of the whole collection per runtime, in alternating rounds (the order flips
    each round), each into a fresh data directory given that runtime's converted model."""
    rates: dict[str, list[float]] = {runtime: [] for runtime in runtimes}
    with tempfile.TemporaryDirectory(prefix="whysim-bench-e2e-") as scratch:
        caches = {}
        for runtime in runtimes:  # convert once, outside the timed runs
            caches[runtime] = DataDir(Path(scratch) / f"cache-{runtime}").runtime_cache_dir
            Embedder(build_branch(ModelRequest(input_size=input_size)), torch.device("cpu"), runtime, caches[runtime])
        for round_number in range(rounds):
            for runtime in runtimes if round_number % 2 == 0 else runtimes[::-1]:
                data_dir = DataDir(Path(scratch) / f"round{round_number}-{runtime}")
                if caches[runtime].is_dir():
                    shutil.copytree(caches[runtime], data_dir.runtime_cache_dir)
                seconds, report = run_whysim("index", dataset, "--data-dir", data_dir.root, *options, "--runtime", runtime)
                processed = report["indexed"] + report["duplicates"] + report["failed"]
                rates[runtime].append(processed / seconds)
                print(f"  end to end, round {round_number + 1}, {runtime:<6} {processed / seconds:6.1f} images/s "
                      f"({seconds:.1f} s)", flush=True)
    first, last = runtimes[0], runtimes[-1]
    ratios = [b / a for a, b in zip(rates[first], rates[last], strict=True)]
    return {"rates": {runtime: [round(r, 2) for r in values] for runtime, values in rates.items()},
            "median_ratio": round(statistics.median(ratios), 3), "ratio_range": [round(min(ratios), 2), round(max(ratios), 2)]}


def fixed_cost(dataset: Path, options: list[object], batch_size: int, model: Measurement,
               converted: Path | None) -> Measurement:
    """Wall and CPU seconds of a `whysim index` run beyond its model time: one batch of the
    collection's files (copied to a scratch folder) into an empty data directory (given the
    converted models of `converted`, when not None), less what the model alone spends on that many images."""
    files = list(itertools.islice(scan_collection(dataset), batch_size))
    with tempfile.TemporaryDirectory(prefix="whysim-bench-fixed-") as scratch:
        folder = Path(scratch) / "batch"
        folder.mkdir()
        for number, scanned in enumerate(files):
            shutil.copyfile(dataset / scanned.path, folder / f"{number:05d}{Path(scanned.path).suffix}")
        if converted is not None and converted.is_dir():
            shutil.copytree(converted, DataDir(Path(scratch) / "data").runtime_cache_dir)
        children_before = cpu_seconds(resource.RUSAGE_CHILDREN)
        seconds, _ = run_whysim("index", folder, "--data-dir", Path(scratch) / "data", *options)
        cpu = cpu_seconds(resource.RUSAGE_CHILDREN) - children_before
    count = len(files)
    return Measurement(count, seconds - count / model.rate, cpu - count * model.cpu_ms_per_image / 1000)


def measure(dataset: Path, args: argparse.Namespace, runtime: str) -> dict[str, float]:
    """Model-only before and after, `whysim index` end to end and its fixed cost, for one runtime."""
    def model_line(label: str, m: Measurement) -> None:
        print(f"{label:<22}{m.rate:6.1f} images/s  {m.cpu_ms_per_image:5.1f} CPU ms/image  "
              f"(lite0, {args.input_size}px, batch {args.batch_size}, runtime {runtime})", flush=True)

    data_dir = args.keep or Path(tempfile.mkdtemp(prefix="whysim-bench-"))
    shutil.rmtree(data_dir, ignore_errors=True)
    converted = None if args.first_run else DataDir(data_dir).runtime_cache_dir
    before, conversion = model_only(dataset, args.input_size, args.batch_size, args.model_batches, runtime, converted)
    model_line("model only (before):", before)
    if conversion:
        print(f"{'model conversion:':<22}{conversion:6.1f} s, once per data directory (cached for the run below)",
              flush=True)
    options = ["--device", "cpu", "--input-size", args.input_size, "--batch-size", args.batch_size, "--no-progress",
               "--runtime", runtime]
    if args.workers is not None:
        options += ["--workers", args.workers]
    children_before = cpu_seconds(resource.RUSAGE_CHILDREN)
    seconds, report = run_whysim("index", dataset, "--data-dir", data_dir, *options)
    processed = report["indexed"] + report["duplicates"] + report["failed"]
    whole = Measurement(processed, seconds, cpu_seconds(resource.RUSAGE_CHILDREN) - children_before)
    print(f"{'whysim index:':<22}{whole.rate:6.1f} images/s  {whole.cpu_ms_per_image:5.1f} CPU ms/image  "
          f"({processed} images in {seconds:.1f} s wall, model conversion "
          f"{'included' if args.first_run else 'cached'}; embedding loop "
          f"{report['images_per_second']:.1f} images/s; {report['indexed']} indexed, {report['duplicates']} duplicate, "
          f"{report['failed']} failed)", flush=True)

    after, _ = model_only(dataset, args.input_size, args.batch_size, args.model_batches, runtime, converted)
    model_line("model only (after):", after)
    model_cpu_ms = (before.cpu_ms_per_image + after.cpu_ms_per_image) / 2
    model = Measurement(1, 2 / (before.rate + after.rate), model_cpu_ms / 1000)  # the mean model cost of one image
    fixed = fixed_cost(dataset, options, args.batch_size, model, converted)
    if args.keep is None:
        shutil.rmtree(data_dir, ignore_errors=True)
    print(f"{'fixed cost:':<22}{fixed.seconds:6.2f} s wall, {fixed.cpu_seconds:.2f} s CPU "
          f"(whysim index of {fixed.images} images less the model's time for them)")
    ratio = whole.rate / ((before.rate + after.rate) / 2)
    cpu_ratio = model_cpu_ms / whole.cpu_ms_per_image
    steady = Measurement(processed, seconds - fixed.seconds, whole.cpu_seconds - fixed.cpu_seconds)
    steady_ratio = steady.rate / ((before.rate + after.rate) / 2)
    print(f"ratio end-to-end / model-only: {ratio:.2f} wall-clock (goal >= 0.85), {cpu_ratio:.2f} in CPU time "
          f"(end-to-end CPU = {1 / cpu_ratio:.2f}x the model's)")
    print(f"without the fixed cost:        {steady_ratio:.2f} wall-clock, {model_cpu_ms / steady.cpu_ms_per_image:.2f} "
          f"in CPU time ({steady.cpu_ms_per_image:.1f} CPU ms/image = "
          f"{steady.cpu_ms_per_image / model_cpu_ms:.2f}x the model's)", flush=True)
    return {"runtime": runtime, "images": processed, "wall_seconds": round(seconds, 2),
            "end_to_end_images_per_second": round(whole.rate, 2), "end_to_end_cpu_ms": round(whole.cpu_ms_per_image, 2),
            "embedding_loop_images_per_second": report["images_per_second"],
            "conversion_seconds": round(conversion, 2), "conversion_in_end_to_end": bool(args.first_run),
            "model_only_before": round(before.rate, 2), "model_only_after": round(after.rate, 2),
            "model_only_cpu_ms": round(model_cpu_ms, 2), "ratio": round(ratio, 3), "cpu_ratio": round(cpu_ratio, 3),
            "fixed_wall_seconds": round(fixed.seconds, 2), "fixed_cpu_seconds": round(fixed.cpu_seconds, 2),
            "steady_ratio": round(steady_ratio, 3), "steady_cpu_ms": round(steady.cpu_ms_per_image, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", nargs="?", type=Path, default=default_dataset())
    parser.add_argument("--input-size", type=int, default=DEFAULT_INPUT_SIZE)
    parser.add_argument("--batch-size", type=int, default=CPU_BATCH_SIZE)
    parser.add_argument("--workers", type=int, default=None, help="passed to whysim (default: its own)")
    parser.add_argument("--model-batches", type=int, default=12, help="timed batches for the model-only rate")
    parser.add_argument("--runtimes", default="torch,auto", help="measured in this order; the last against the first")
    parser.add_argument("--keep", type=Path, default=None, help="keep the data directory here (for bench_rerun.py)")
    parser.add_argument("--rounds", type=int, default=8, help="interleaved model-only rounds of the first and last runtime")
    parser.add_argument("--end-to-end-rounds", type=int, default=3,
                        help="alternating `whysim index` runs of the first and last runtime (0: none)")
    parser.add_argument("--first-run", action="store_true",
                        help="time the model conversion inside the end-to-end run (a data directory's first run)")
    args = parser.parse_args()
    dataset = require_dataset(args.dataset)
    runs = []
    for runtime in args.runtimes.split(","):
        print(f"-- runtime {runtime}", flush=True)
        runs.append(measure(dataset, args, runtime))
    first, last = runs[0], runs[-1]
    paired: dict[str, dict[str, object]] = {}
    paired_e2e: dict[str, object] = {}
    if len(runs) > 1:
        def model_rate(run: dict[str, float]) -> float:
            return (run["model_only_before"] + run["model_only_after"]) / 2

        paired = paired_model_only(dataset, args.input_size, args.batch_size, [first["runtime"], last["runtime"]],
                                   args.rounds)
        low, high = paired[last["runtime"]]["speed_range"]  # type: ignore[misc]
        print(f"model only, {args.rounds} interleaved rounds: {paired[last['runtime']]['images_per_second']} vs "
              f"{paired[first['runtime']]['images_per_second']} images/s, {last['runtime']} "
              f"{paired[last['runtime']]['speed_vs_first']}x {first['runtime']} (median of the rounds; {low}-{high})")
        if args.end_to_end_rounds:
            common = ["--device", "cpu", "--input-size", args.input_size, "--batch-size", args.batch_size, "--no-progress"]
            if args.workers is not None:
                common += ["--workers", args.workers]
            paired_e2e = paired_end_to_end(dataset, args.input_size, common, [first["runtime"], last["runtime"]], args.end_to_end_rounds)
            low, high = paired_e2e["ratio_range"]  # type: ignore[misc]
            print(f"whysim index, {args.end_to_end_rounds} alternating rounds: {last['runtime']} "
                  f"{paired_e2e['median_ratio']}x {first['runtime']} (median of the rounds; {low}-{high})")
        print(f"speed-up of {last['runtime']} over {first['runtime']}: model only "
              f"{paired[last['runtime']]['speed_vs_first']}x paired ({model_rate(last) / model_rate(first):.2f}x from the "
              f"before/after rates, {model_rate(last):.1f} vs {model_rate(first):.1f} images/s), "
              f"whysim index end to end {last['end_to_end_images_per_second'] / first['end_to_end_images_per_second']:.2f}x "
              f"({last['end_to_end_images_per_second']:.1f} vs {first['end_to_end_images_per_second']:.1f} images/s)")
    print(json.dumps({"dataset": str(dataset), "input_size": args.input_size, "batch_size": args.batch_size,
                      "workers": args.workers, "first_run": args.first_run, "runs": runs,
                      "paired_model_only": paired, "paired_end_to_end": paired_e2e}))


if __name__ == "__main__":
    main()
