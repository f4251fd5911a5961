"""PyTorch work on a server thread under each glibc heap policy: why `whysim serve` keeps one heap.

Each policy runs in a fresh interpreter (mallopt settings are per process), and times, on a
worker thread as the server runs them: explaining one pair (the model thread's work, PyTorch
whatever the runtime), then embedding batches of 32 images with PyTorch (what an API re-index
or `--runtime torch` does). Kernel (system) time and minor page faults show where the time goes.

    defaults        glibc as it comes: an arena per thread, a dynamic mmap threshold
    4 MB mmap       what `whysim serve` set before: a fixed 4 MB mmap threshold and 4 arenas
    kept, threads   freed memory kept (no mmaps, no trim), an arena per thread
    one kept heap   what `whysim serve` sets now (search/serving/memory.py): one arena, kept

    .venv/bin/python tests/benchmarks/bench_server_heap.py [--input-size 448] [--batches 4] [--explanations 5]
"""
from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import resource
import subprocess
import sys
import threading
import time
from typing import Any

POLICIES = ("defaults", "4 MB mmap", "kept, threads", "one kept heap")
M_MMAP_THRESHOLD, M_ARENA_MAX = -3, -8  # glibc malloc.h


def apply_policy(policy: str) -> None:
    from whysim.indexer.runtime.torch_session import retain_freed_memory
    from whysim.search.serving.memory import use_one_kept_heap

    mallopt = ctypes.CDLL(ctypes.util.find_library("c")).mallopt
    if policy == "4 MB mmap":
        mallopt(M_MMAP_THRESHOLD, 4 * 2**20)
        mallopt(M_ARENA_MAX, 4)
    elif policy == "kept, threads":
        retain_freed_memory()
    elif policy == "one kept heap":
        use_one_kept_heap()


def on_a_thread(work: Any, repeats: int) -> dict[str, float]:
    """Wall and system ms per repeat of `work` (after one untimed call) on a new thread, and minor faults."""
    found: dict[str, float] = {}

    def run() -> None:
        work()
        before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        for _ in range(repeats):
            work()
        after = resource.getrusage(resource.RUSAGE_SELF)
        found.update(wall_ms=1000 * (time.perf_counter() - started) / repeats,
                     system_ms=1000 * (after.ru_stime - before.ru_stime) / repeats,
                     faults=(after.ru_minflt - before.ru_minflt) / repeats)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return found


def measure(policy: str, input_size: int, batches: int, explanations: int) -> dict[str, Any]:
    import whysim.indexer  # noqa: F401  first: it sets the OpenMP wait policy before torch loads

    apply_policy(policy)
    import torch

    from whysim.indexer.model.loading import ModelRequest, build_branch
    from whysim.indexer.pipeline.embedding import Embedder
    from whysim.search.explain.gradcam import PairExplainer

    generator = torch.Generator().manual_seed(0)
    embedder = Embedder(build_branch(ModelRequest(input_size=input_size)), torch.device("cpu"), "torch")
    # Explanations first, as on a server whose index runtime is not PyTorch: the model thread's
    # first large blocks are an explanation's.
    explainer = PairExplainer(embedder.branch)
    query, hit = (torch.randint(0, 256, (1, 3, input_size, input_size), dtype=torch.uint8, generator=generator)
                  for _ in range(2))
    explaining = on_a_thread(lambda: explainer.explain(query, hit), explanations)
    batch = torch.randint(0, 256, (32, 3, input_size, input_size), dtype=torch.uint8, generator=generator)
    embedding = on_a_thread(lambda: embedder(batch), batches)
    return {"policy": policy, "embed_images_per_second": round(32_000 / embedding["wall_ms"], 1),
            "embed_system_ms_per_image": round(embedding["system_ms"] / 32, 1),
            "explain_ms": round(explaining["wall_ms"]), "explain_system_ms": round(explaining["system_ms"]),
            "explain_minor_faults": int(explaining["faults"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input-size", type=int, default=448)
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--explanations", type=int, default=5)
    parser.add_argument("--policy", choices=POLICIES, help=argparse.SUPPRESS)  # the child's side
    args = parser.parse_args()
    if args.policy:
        print(json.dumps(measure(args.policy, args.input_size, args.batches, args.explanations)))
        return
    rows = []
    print(f"{'heap policy':<16}{'embed images/s':>15}{'system ms/image':>17}{'explain ms':>12}{'system ms':>11}"
          f"{'minor faults':>14}   (on a worker thread, PyTorch, {args.input_size} px)")
    for policy in POLICIES:
        done = subprocess.run([sys.executable, __file__, "--policy", policy, "--input-size", str(args.input_size),
                               "--batches", str(args.batches), "--explanations", str(args.explanations)],
                              capture_output=True, text=True, check=True)
        row = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"{policy:<16}{row['embed_images_per_second']:>15}{row['embed_system_ms_per_image']:>17}"
              f"{row['explain_ms']:>12}{row['explain_system_ms']:>11}{row['explain_minor_faults']:>14}", flush=True)
    print(json.dumps({"input_size": args.input_size, "policies": rows}))


if __name__ == "__main__":
    main()
