"""What the benchmark scripts share: locating the dataset, running the real `whysim` CLI, and
pooling one backbone pass several ways, and choosing one cut for several collections."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import faiss
import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
# ../shared/datasets/flowers from the main checkout; from a worktree under wt/ it is one level up.
DATASET_CANDIDATES = [REPO_ROOT.parent / "shared" / "datasets" / "flowers",
                      REPO_ROOT.parent.parent / "shared" / "datasets" / "flowers"]


def default_dataset() -> Path:
    for candidate in DATASET_CANDIDATES:
        if candidate.is_dir():
            return candidate
    return DATASET_CANDIDATES[0]


def require_dataset(path: Path) -> Path:
    if not path.is_dir():
        sys.exit(f"dataset not found: {path} (pass its path as the first argument)")
    return path


def run_whysim(*args: object) -> tuple[float, dict[str, Any]]:
    """Runs `whysim ARGS --json` in a fresh interpreter; returns (wall seconds, its JSON report)."""
    command = [sys.executable, "-c", "from whysim.webui.cli import main; main()", *map(str, args), "--json"]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"whysim {' '.join(map(str, args))} failed ({done.returncode}):\n{done.stderr}")
    return seconds, json.loads(done.stdout)


def pooled_vectors(branch: Any, paths: list[Path], size: int, batch_size: int, workers: int,
                   poolings: dict[str, Any], label: str) -> dict[str, Any]:
    """Reads `paths` with the indexer's read stage, runs `branch` once up to its target layer and
    returns L2-normalised vectors per pooling (numpy, in path order); stops on an unreadable file."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from torch.utils.data import DataLoader

    from whysim.indexer.pipeline.reading import ImageFileDataset, ReadRequest, collate_reads, init_reader_worker

    requests = [ReadRequest(i, path) for i, path in enumerate(paths)]
    loader = DataLoader(ImageFileDataset(requests, size), batch_size=batch_size, num_workers=workers,
                        collate_fn=collate_reads, worker_init_fn=init_reader_worker if workers else None)
    pooled: dict[str, list[Any]] = {name: [] for name in poolings}
    done = 0
    with torch.inference_mode():
        for batch in loader:
            failed = [r for r in batch.results if r.error]
            if failed:
                raise RuntimeError(f"{len(failed)} unreadable images, e.g. {failed[0].error}")
            fmaps = branch.feature_maps(batch.pixels.contiguous(memory_format=torch.channels_last)).float()
            for name, pool in poolings.items():
                pooled[name].append(F.normalize(pool(fmaps), dim=-1).numpy())
            done += len(batch.results)
            print(f"\r  {label}: {done}/{len(paths)}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return {name: np.concatenate(chunks) for name, chunks in pooled.items()}


def tune_store(store: Any, nprobe: int | None = None, k_factor: int | None = None, ef_search: int | None = None) -> None:
    """Search-time accuracy/speed knobs of a FAISS VectorStore, for the index studies: ivfpq lists
    probed and candidates re-ranked per result, HNSW search breadth. Others are ignored."""
    inner = faiss.downcast_index(store.index.index)
    if store.kind == "ivfpq":
        if nprobe is not None:
            faiss.downcast_index(inner.base_index).nprobe = int(nprobe)
        if k_factor is not None:
            inner.k_factor = float(k_factor)
    elif store.kind == "hnsw" and ef_search is not None:
        inner.hnsw.efSearch = int(ef_search)


def least_shortfall_cut(curves: list[tuple[np.ndarray, np.ndarray]], metric: Callable[[np.ndarray, np.ndarray, float], float],
                        quantiles: tuple[float, float], steps: int) -> tuple[float, np.ndarray, np.ndarray]:
    """The one cut, over every collection's (scores, same) curve, whose worst shortfall from each
    collection's own best `metric` is smallest, on a grid of `steps` cuts between the curves'
    quantiles; returns the cut, each curve's metric there, and each curve's best on the grid."""
    low = min(float(np.quantile(scores, quantiles[0])) for scores, _ in curves)
    high = max(float(np.quantile(scores, quantiles[1])) for scores, _ in curves)
    cuts = np.linspace(low, high, steps)
    table = np.array([[metric(scores, same, cut) for cut in cuts] for scores, same in curves])
    shortfall = (table - table.max(axis=1, keepdims=True)).min(axis=0)
    best = int(np.argmax(shortfall))
    return float(cuts[best]), table[:, best], table.max(axis=1)
