"""End-to-end `whysim index` throughput against the model alone, per decoder, on CPU or CUDA.

One prepared script (a few minutes on one H100 with the defaults there): it copies the
collection --copies times into a scratch folder, each copy made unique by a JPEG comment
segment (byte-identical files would be indexed as duplicates and never embedded), then
measures in the same process:

  model      the branch alone on batches already on the device (the ceiling)
  reader     each decoder alone: files -> model-ready pixel batches
  index      a full `whysim index` run per decoder (read, decode, embed, catalog and
             FAISS writes), fresh data directory each time; images/s of the embedding phase

and prints each rate with its ratio to the model-only rate, then one JSON line.

    .venv/bin/python tests/benchmarks/bench_gpu_pipeline.py [DATASET] [--device auto] [--copies N]

Defaults: on CUDA 10 copies of the dataset, batch 256, pil with one worker per core;
on CPU 1,000 images, batch 64.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from whysim.indexer.datadir import DataDir
from whysim.indexer.model.loading import ModelRequest, build_branch
from whysim.indexer.pipeline.device_reading import DeviceBatchReader, default_read_threads
from whysim.indexer.pipeline.embedding import Embedder, resolve_device
from whysim.indexer.pipeline.reading import ImageFileDataset, ReadBatch, ReadRequest, collate_reads, init_reader_worker
from whysim.indexer.pipeline.runner import IndexOptions, IndexRun
from whysim.indexer.scanning import scan_collection

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATASET = REPO_ROOT.parent / "shared" / "datasets" / "flowers"


def unique_copy(data: bytes, tag: bytes) -> bytes:
    """The same picture with different bytes: a COM segment after SOI (JPEG), else a trailer."""
    if data.startswith(b"\xff\xd8"):
        comment = b"whysim benchmark copy " + tag
        return data[:2] + b"\xff\xfe" + (len(comment) + 2).to_bytes(2, "big") + comment + data[2:]
    return data + b"\0" + tag


def prepare_collection(dataset: Path, target: Path, copies: int, limit: int) -> int:
    files = [file.path for file in scan_collection(dataset)]
    written = 0
    for copy in range(copies):
        for path in files:
            if limit and written >= limit:
                return written
            destination = target / f"copy{copy:02d}" / path
            destination.parent.mkdir(parents=True, exist_ok=True)
            destination.write_bytes(unique_copy((dataset / path).read_bytes(), f"{copy}".encode()))
            written += 1
    return written


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def model_rate(embedder: Embedder, pixels: torch.Tensor, batches: int) -> float:
    pixels = pixels.to(embedder.device)
    embedder(pixels)  # warm-up (cuDNN autotune, lazy init)
    synchronize(embedder.device)
    started = time.perf_counter()
    for _ in range(batches):
        embedder(pixels)
    synchronize(embedder.device)
    return batches * len(pixels) / (time.perf_counter() - started)


def batches_for(decoder: str, requests: list[ReadRequest], size: int, batch_size: int, device: torch.device,
                workers: int, threads: int) -> object:
    if decoder == "device":
        return DeviceBatchReader(requests, size, batch_size, device, threads=threads)
    return DataLoader(ImageFileDataset(requests, size), batch_size=batch_size, num_workers=workers,
                      collate_fn=collate_reads, worker_init_fn=init_reader_worker if workers else None,
                      prefetch_factor=4 if workers else None, pin_memory=device.type == "cuda")


def reader_rate(decoder: str, requests: list[ReadRequest], size: int, batch_size: int, device: torch.device,
                workers: int, threads: int) -> tuple[float, torch.Tensor | None]:
    started = time.perf_counter()
    first: torch.Tensor | None = None
    count = 0
    for batch in batches_for(decoder, requests, size, batch_size, device, workers, threads):  # type: ignore[attr-defined]
        assert isinstance(batch, ReadBatch)
        if batch.pixels is not None:
            batch.pixels.to(device)
            if first is None and len(batch.pixels) == batch_size:
                first = batch.pixels
        count += len(batch.results)
    synchronize(device)
    return count / (time.perf_counter() - started), first


def index_rate(root: Path, data: Path, decoder: str, device: str, batch_size: int, workers: int,
               threads: int, size: int) -> dict[str, float]:
    shutil.rmtree(data, ignore_errors=True)
    # A fixed index type: the automatic one could retrain IVF-PQ at the end, inside the timing.
    options = IndexOptions(device=device, batch_size=batch_size, workers=workers, decoder=decoder,
                           read_threads=threads, index_type="flat", progress=False)
    started = time.perf_counter()
    report = IndexRun(root, DataDir(data), options, build_branch(ModelRequest(input_size=size))).run()
    return {"indexed": report.indexed, "failed": report.failed, "duplicates": report.duplicates,
            "images_per_second": report.images_per_second, "wall_s": round(time.perf_counter() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", nargs="?", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--copies", type=int, default=0, help="copies of the dataset (default: 10 on CUDA, 1 on CPU)")
    parser.add_argument("--limit", type=int, default=-1, help="at most this many images (default: none on CUDA, 1000 on CPU)")
    parser.add_argument("--batch-size", type=int, default=0, help="default: 256 on CUDA, 64 on CPU")
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--workers", type=int, default=0, help="pil decoder processes (default: one per core)")
    parser.add_argument("--read-threads", type=int, default=0, help="device decoder threads (default: a few per core)")
    parser.add_argument("--decoders", nargs="+", default=["pil", "device"], choices=["pil", "device"])
    parser.add_argument("--scratch", type=Path, default=None, help="where to write the copies (default: a temp dir)")
    args = parser.parse_args()
    if not args.dataset.is_dir():
        parser.error(f"no dataset at {args.dataset}")

    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    copies = args.copies or (10 if cuda else 1)
    limit = args.limit if args.limit >= 0 else (0 if cuda else 1000)
    batch_size = args.batch_size or (256 if cuda else 64)
    workers = args.workers or (os.cpu_count() or 2)
    threads = args.read_threads or default_read_threads()
    scratch = Path(tempfile.mkdtemp(prefix="whysim-bench-", dir=args.scratch))
    try:
        root = scratch / "photos"
        started = time.perf_counter()
        count = prepare_collection(args.dataset, root, copies, limit)
        print(f"{count} images ({copies} copies of {args.dataset.name}) prepared in "
              f"{time.perf_counter() - started:.1f} s; device {device} "
              f"({torch.cuda.get_device_name(device) if cuda else f'{os.cpu_count()} cores'}), "
              f"batch {batch_size}, input {args.input_size}, pil workers {workers}, device-reader threads {threads}")
        requests = [ReadRequest(i, root / f.path) for i, f in enumerate(scan_collection(root))]
        reader: dict[str, float] = {}
        sample = None
        for decoder in args.decoders:
            reader[decoder], first = reader_rate(decoder, requests, args.input_size, batch_size, device, workers, threads)
            sample = sample if sample is not None else first
        assert sample is not None, "need at least one full batch of images"
        embedder = Embedder(build_branch(ModelRequest(input_size=args.input_size)), device)
        model = model_rate(embedder, sample, batches=max(3, min(100, count // batch_size)))
        del embedder
        print(f"model only: {model:,.0f} images/s")
        results: dict[str, dict[str, float]] = {}
        for decoder in args.decoders:
            results[decoder] = index_rate(root, scratch / f"data-{decoder}", decoder, device.type, batch_size,
                                          workers, threads, args.input_size)
            results[decoder]["reader_images_per_second"] = round(reader[decoder], 1)
            results[decoder]["ratio_to_model"] = round(results[decoder]["images_per_second"] / model, 3)
            print(f"{decoder:>6}: reader alone {reader[decoder]:,.0f} images/s; whysim index "
                  f"{results[decoder]['images_per_second']:,.0f} images/s = {results[decoder]['ratio_to_model']:.2f} "
                  f"of model-only ({results[decoder]['indexed']} indexed, {results[decoder]['failed']} failed, "
                  f"{results[decoder]['wall_s']} s wall)", flush=True)
        print(json.dumps({"benchmark": "gpu_pipeline", "device": str(device), "images": count,
                          "batch_size": batch_size, "input_size": args.input_size,
                          "model_images_per_second": round(model, 1), "decoders": results}))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
