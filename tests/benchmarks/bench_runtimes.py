"""CPU runtimes of the embedding forward pass, model only, in the same run: PyTorch eager (the
Embedder as it was: BatchNorm folded, channels_last), OpenVINO and ONNX Runtime.

Rounds are interleaved (each round times every runtime once, in turn), so a change in the
machine's load hits all of them alike; speed-ups are the medians of per-round ratios against
PyTorch. Each runtime converts into a fresh cache first, so the first-run conversion cost is
printed too, and its vectors are compared with PyTorch's on the same real photos.

    .venv/bin/python tests/benchmarks/bench_runtimes.py ../shared/datasets/rooms \\
        [--runtimes torch,openvino,openvino:LATENCY,onnxruntime] [--batch-size 32] [--rounds 5]

ONNX Runtime's OpenVINO execution provider comes with the onnxruntime-openvino build, which
replaces onnxruntime: run the script from an environment that has it installed instead.
"""
from __future__ import annotations

import argparse
import itertools
import json
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bench_support import default_dataset, require_dataset

import whysim.indexer  # noqa: F401  first: it sets the OpenMP wait policy before torch loads
from whysim.indexer.imaging import DEFAULT_MAX_PIXELS
from whysim.indexer.model.card import DEFAULT_INPUT_SIZE
from whysim.indexer.model.loading import ModelRequest, build_branch
from whysim.indexer.pipeline.embedding import Embedder
from whysim.indexer.pipeline.options import CPU_BATCH_SIZE
from whysim.indexer.pipeline.reading import ReadRequest, read_image_file
from whysim.indexer.runtime.openvino_session import OpenVINOSession
from whysim.indexer.scanning import scan_collection


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def open_embedder(spec: str, size: int, cache: Path) -> tuple[Embedder, float]:
    """`runtime` or `openvino:HINT`; returns the embedder and the seconds it took to open (conversion included)."""
    runtime, _, hint = spec.partition(":")
    started = time.perf_counter()
    embedder = Embedder(build_branch(ModelRequest(input_size=size)), torch.device("cpu"), runtime, cache)
    if hint:
        embedder.session = OpenVINOSession(embedder.branch, cache, hint)
    return embedder, time.perf_counter() - started


def paired_rounds(embedders: dict[str, Embedder], batch: torch.Tensor, batches: int,
                  rounds: int) -> dict[str, dict[str, Any]]:
    """Each embedder in turn on the same batch, `rounds` times over, so every round compares them
    under the same machine load; speed_vs_first is the median of the per-round ratios to the first."""
    ms: dict[str, list[float]] = {spec: [] for spec in embedders}
    cpu_ms: dict[str, list[float]] = {spec: [] for spec in embedders}
    for _ in range(rounds):
        for spec, embedder in embedders.items():
            cpu_before, started = cpu_seconds(), time.perf_counter()
            for _ in range(batches):
                embedder(batch)
            images = batches * len(batch)
            ms[spec].append(1000 * (time.perf_counter() - started) / images)
            cpu_ms[spec].append(1000 * (cpu_seconds() - cpu_before) / images)
    base = next(iter(embedders))
    summary = {}
    for spec in embedders:
        ratios = [b / s for b, s in zip(ms[base], ms[spec])]
        summary[spec] = {"wall_ms_per_image": round(statistics.median(ms[spec]), 1),
                         "cpu_ms_per_image": round(statistics.median(cpu_ms[spec]), 1),
                         "images_per_second": round(1000 / statistics.median(ms[spec]), 1),
                         "speed_vs_first": round(statistics.median(ratios), 2),
                         "speed_range": [round(min(ratios), 2), round(max(ratios), 2)]}
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", nargs="?", type=Path, default=default_dataset())
    parser.add_argument("--runtimes", default="torch,openvino,onnxruntime")
    parser.add_argument("--input-size", type=int, default=DEFAULT_INPUT_SIZE)
    parser.add_argument("--batch-size", type=int, default=CPU_BATCH_SIZE)
    parser.add_argument("--batches", type=int, default=2, help="timed batches per runtime and round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    dataset = require_dataset(args.dataset)
    specs = args.runtimes.split(",")

    files = list(itertools.islice(scan_collection(dataset), args.batch_size))
    decoded = [read_image_file(ReadRequest(i, dataset / f.path), args.input_size, DEFAULT_MAX_PIXELS).pixels
               for i, f in enumerate(files)]
    batch = torch.stack([p for p in decoded if p is not None][:args.batch_size])
    with tempfile.TemporaryDirectory(prefix="whysim-runtimes-") as cache:
        embedders, reference = {}, None
        for spec in specs:
            embedder, opened = open_embedder(spec, args.input_size, Path(cache))
            vectors = embedder(batch)  # also the warm-up
            reference = vectors if reference is None else reference
            embedders[spec] = embedder
            print(f"{spec:<20} opened in {opened:5.1f} s (first run: conversion included); "
                  f"max abs difference to {specs[0]}: {np.abs(vectors - reference).max():.1e}", flush=True)
        summary = paired_rounds(embedders, batch, args.batches, args.rounds)
    for spec in specs:
        print(f"{spec:<20} {summary[spec]['images_per_second']:6.1f} images/s  "
              f"{summary[spec]['wall_ms_per_image']:6.1f} ms/image wall  {summary[spec]['cpu_ms_per_image']:6.1f} "
              f"CPU ms/image  {summary[spec]['speed_vs_first']:.2f}x {specs[0]} "
              f"(rounds {summary[spec]['speed_range'][0]:.2f}-{summary[spec]['speed_range'][1]:.2f})")
    print(json.dumps({"batch_size": len(batch), "input_size": args.input_size, "rounds": args.rounds,
                      "runtimes": summary}))


if __name__ == "__main__":
    main()
