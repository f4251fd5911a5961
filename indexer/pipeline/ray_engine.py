"""`whysim index DIR --engine ray`: read, decode and embed on a Ray cluster with Ray Data.

Scanning, planning, duplicate detection and writing stay in the driver, exactly as in the
built-in loop: Ray Data streams batches of (id, digest, size, error, vector) back, and the
driver hands them to the same outcome sorting and chunk writer, chunk by chunk, so Ctrl-C or
`kill -9` loses at most the chunk in hand and a rerun continues. Reading and decoding run as
Ray tasks (`read_batch`, the built-in reader's own function); embedding runs in a pool of
model actors (`EmbedActor`, the built-in Embedder), one GPU each where the cluster has GPUs.
The model goes to the actors through Ray's object store, so nodes need no copy of the data
directory; the collection's files must be readable at the same path on every node.

Ray is imported only here, and only for --engine ray.
"""
from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from whysim.indexer.errors import RayUnavailable
from whysim.indexer.model.branch import SiameseBranch
from whysim.indexer.pipeline.embedding import Embedder
from whysim.indexer.pipeline.reading import ReadRequest, ReadResult, read_image_file

# Files per read task: big enough to amortise a task, small enough to keep every core busy.
READ_BATCH = 16
# Ray Data streams results back a block at a time; a block is also what a kill can lose
# beyond the chunk in hand, so blocks are at most a chunk (and at most this many per pass).
MAX_BLOCKS = 2000
# Nothing leaves the machine: no usage reports, no dashboard, no metrics exporter. And a new
# local cluster may take its time: its GCS server takes ~25 s to start on two busy cores, close
# to Ray's default wait of 30 s for it (a test run once failed there), so wait up to 120 s.
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_DISABLE_IMPORT_WARNING": "1",
           "RAY_enable_metrics_collection": "0", "RAY_gcs_server_port_wait_time_s": "120"}


def ensure_ray(address: str | None) -> Any:
    """Ray, connected: to `address` (a cluster), to the cluster this process already joined,
    or to a new local one on this machine's cores."""
    for name, value in RAY_ENV.items():
        os.environ.setdefault(name, value)
    try:
        import ray
    except ImportError as exc:
        raise RayUnavailable("--engine ray needs Ray Data: pip install 'whysim[ray]'") from exc
    if not ray.is_initialized():
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise RayUnavailable(f"cannot reach the Ray cluster at {address or 'a new local cluster'}: {exc}") from exc
    return ray


def read_batch(batch: dict[str, np.ndarray], input_size: int, max_pixels: int) -> dict[str, np.ndarray]:
    """Ray task: file paths -> digests, sizes, errors and (B, S, S, 3) uint8 pixels (zeros on error)."""
    results = [read_image_file(ReadRequest(int(i), Path(str(p))), input_size, max_pixels)
               for i, p in zip(batch["image_id"], batch["path"], strict=True)]
    pixels = np.zeros((len(results), input_size, input_size, 3), dtype=np.uint8)
    for row, result in enumerate(results):
        if result.pixels is not None:
            pixels[row] = result.pixels.permute(1, 2, 0).numpy()
    return {
        "image_id": np.array([r.image_id for r in results], dtype=np.int64),
        "sha256": np.array([r.sha256 or "" for r in results], dtype=object),
        "width": np.array([-1 if r.width is None else r.width for r in results], dtype=np.int64),
        "height": np.array([-1 if r.height is None else r.height for r in results], dtype=np.int64),
        "error": np.array([r.error or "" for r in results], dtype=object),
        "pixels": pixels,
    }


class EmbedActor:
    """Ray actor: one model on one device, embedding the error-free rows of each batch."""

    def __init__(self, branch: Any, device: str) -> None:
        import ray

        # Ray Data passes constructor arguments as they are: the model comes as an object ref.
        model = ray.get(branch) if isinstance(branch, ray.ObjectRef) else branch
        self.embedder = Embedder(model, torch.device(device))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ok = np.flatnonzero(batch["error"] == "")
        vectors = np.zeros((len(batch["image_id"]), self.embedder.branch.card.dim), dtype=np.float32)
        if len(ok):
            # (B, S, S, 3) memory seen as (B, 3, S, S): the channels_last batch the built-in readers give.
            pixels = torch.from_numpy(np.ascontiguousarray(batch["pixels"][ok])).permute(0, 3, 1, 2)
            vectors[ok] = self.embedder(pixels)
        out = {key: value for key, value in batch.items() if key != "pixels"}
        out["vector"] = vectors
        return out


@dataclass(frozen=True)
class RayPlan:
    """How the pass uses the cluster: model actors, and what each one takes."""

    actors: int
    gpus_per_actor: float
    cpus_per_actor: float
    device: str

    @classmethod
    def for_cluster(cls, resources: dict[str, float], device: str) -> RayPlan:
        gpus = int(resources.get("GPU", 0))
        if gpus and device != "cpu":
            return cls(actors=gpus, gpus_per_actor=1, cpus_per_actor=1, device="cuda")
        if device == "cuda":
            raise RayUnavailable("--device cuda was asked for, but the Ray cluster has no GPUs")
        cpus = max(1, int(resources.get("CPU", 1)))
        # Half the cores embed (in actors of two threads each) and half read and decode.
        actors = max(1, cpus // 4)
        return cls(actors=actors, gpus_per_actor=0, cpus_per_actor=max(1, cpus // (2 * actors)), device="cpu")


def to_results(batch: dict[str, np.ndarray]) -> tuple[list[ReadResult], np.ndarray]:
    """A streamed batch as the built-in reader's results, and the vectors of its error-free rows."""
    results = [ReadResult(int(i), sha or None, None if w < 0 else int(w), None if h < 0 else int(h), err or None, None)
               for i, sha, w, h, err in zip(batch["image_id"], batch["sha256"], batch["width"], batch["height"],
                                            batch["error"], strict=True)]
    return results, batch["vector"][batch["error"] == ""]


def embedded_batches(ray: Any, requests: list[ReadRequest], branch: SiameseBranch, input_size: int,
                     max_pixels: int, batch_size_for: Callable[[str], int], device: str,
                     chunk_size: int) -> Iterator[tuple[list[ReadResult], np.ndarray]]:
    """Streams (results, vectors of the error-free results) as the cluster finishes batches."""
    import ray.data

    plan = RayPlan.for_cluster(ray.cluster_resources(), device)
    batch_size = batch_size_for(plan.device)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the runner has its own bar
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)  # no per-run execution log on our output
    items = [{"image_id": r.image_id, "path": str(r.path)} for r in requests]
    per_block = max(1, min(READ_BATCH, chunk_size))
    blocks = max(1, min(math.ceil(len(items) / per_block), MAX_BLOCKS))
    dataset = (ray.data.from_items(items, override_num_blocks=blocks)
               # Half a CPU per read task: unlike the actors' requests, so Ray does not fuse
               # reading into the model actors (which would serialise decoding and embedding).
               .map_batches(read_batch, batch_size=per_block, batch_format="numpy", num_cpus=0.5,
                            fn_kwargs={"input_size": input_size, "max_pixels": max_pixels})
               .map_batches(EmbedActor, batch_size=batch_size, batch_format="numpy",
                            fn_constructor_args=(ray.put(branch), plan.device),
                            compute=ray.data.ActorPoolStrategy(size=plan.actors),
                            num_gpus=plan.gpus_per_actor, num_cpus=plan.cpus_per_actor))
    for batch in dataset.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=2):
        yield to_results(batch)


def run_ray_pass(requests: list[ReadRequest], branch: SiameseBranch, address: str | None, input_size: int,
                 max_pixels: int, batch_size_for: Callable[[str], int], device: str, chunk_size: int,
                 handle: Callable[[list[ReadResult], np.ndarray], None]) -> None:
    """One embedding pass over `requests` on the cluster (`batch_size_for(device type)` images per
    forward pass); `handle` gets each batch in the driver, as it comes."""
    ray = ensure_ray(address)
    for results, vectors in embedded_batches(ray, requests, branch, input_size, max_pixels, batch_size_for, device,
                                             chunk_size):
        handle(results, vectors)
