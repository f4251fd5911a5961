"""Index kinds at scale: build time, memory, recall@10 against exact search, query latency.

Base and queries are clustered, L2-normalised synthetic vectors (synthetic_vectors.py;
queries are fresh draws, not base rows). The exact answer comes from the flat index, which
is then freed (--exact-cache keeps it for reruns); every store is built chunk by chunk
through VectorStore, as the indexer does, so peak memory stays near one index plus one
chunk. Latency is single queries, one after another: wall p50/p95 with all FAISS threads
(as the search server runs them), and "1thr cpu", the calling thread's CPU time with one
FAISS thread, the figure to trust when other jobs share the machine.

HNSW takes long to build at a million 1280-d vectors on two cores; --hnsw-size builds it
smaller and extrapolates the build time (n log n) to --size.

    .venv/bin/python tests/benchmarks/bench_index_scale.py [--size 1000000] [--kinds flat hnsw ivfpq]
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import resource
import sys
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_index_threshold import single_query_ms  # noqa: E402
from bench_support import tune_store  # noqa: E402
from synthetic_vectors import ClusteredVectors  # noqa: E402

from whysim.indexer.index_kinds import choose_index_kind  # noqa: E402
from whysim.indexer.vectors import IvfPqParams, VectorStore, ivfpq_training_size  # noqa: E402

K = 10
# Matches the flowers embeddings' neighbourhood structure (synthetic_vectors.py, README).
POINTS_PER_CLUSTER = 30


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def build(data: ClusteredVectors, size: int, kind: str) -> tuple[VectorStore, float, float]:
    """The store, its build seconds and the memory it holds (MB of RSS growth)."""
    before = rss_mb()
    started = time.perf_counter()
    training = None
    if kind == "ivfpq":
        wanted = ivfpq_training_size(size, data.dim)
        chunks = itertools.islice(data.base(size), math.ceil(wanted / data.chunk_size))
        training = np.concatenate([chunk for _, chunk in chunks])[:wanted]
    store = VectorStore.empty(data.dim, kind, training)
    del training
    for start, chunk in data.base(size):
        store.add(np.arange(start, start + len(chunk)), chunk)
    return store, time.perf_counter() - started, rss_mb() - before


def recall_at_k(found: np.ndarray, exact: np.ndarray) -> float:
    hits = sum(len(set(f[:K]) & set(e[:K])) for f, e in zip(found, exact))
    return hits / (len(exact) * K)


def latency(store: VectorStore, queries: np.ndarray) -> dict[str, float]:
    wall, cpu = single_query_ms(store, queries, K)
    return {"p50_ms": round(float(np.percentile(wall, 50)), 3), "p95_ms": round(float(np.percentile(wall, 95)), 3),
            "cpu_p50_ms": round(float(np.percentile(cpu, 50)), 3)}


def exact_neighbours(data: ClusteredVectors, size: int, queries: np.ndarray, latency_queries: np.ndarray,
                     cache: Path | None) -> tuple[np.ndarray, dict[str, object]]:
    """Exact top-10 from the flat index, and flat's own row; cached in `cache` when given."""
    if cache is not None and cache.exists():
        saved = json.loads(cache.read_text())
        if saved["size"] == size and saved["queries"] == len(queries) and saved["generator"] == repr(data):
            return np.asarray(saved["exact"]), saved["row"]
    store, seconds, memory = build(data, size, "flat")
    _, exact = store.search(queries, K)
    row = {"kind": "flat", "vectors": size, "build_s": round(seconds, 1), "memory_mb": round(memory),
           "recall_at_10": 1.0, **latency(store, latency_queries)}
    if cache is not None:
        cache.write_text(json.dumps({"size": size, "queries": len(queries), "generator": repr(data),
                                     "exact": exact.tolist(), "row": row}))
    return exact, row


def measure(data: ClusteredVectors, size: int, kind: str, queries: np.ndarray, exact: np.ndarray,
            latency_queries: np.ndarray, sweep: bool) -> list[dict[str, object]]:
    store, seconds, memory = build(data, size, kind)
    rows = []
    settings: list[dict[str, int]] = [{}]
    if sweep and kind == "ivfpq":
        settings += [{"nprobe": p, "k_factor": f} for p, f in ((16, 16), (64, 16), (128, 16), (256, 16), (64, 8), (64, 32))]
    if sweep and kind == "hnsw":
        settings += [{"ef_search": ef} for ef in (48, 192, 384)]
    for setting in settings:
        tune_store(store, **setting)
        _, found = store.search(queries, K)
        rows.append({"kind": kind, "vectors": size, "build_s": round(seconds, 1), "memory_mb": round(memory),
                     "recall_at_10": round(recall_at_k(found, exact), 4), **latency(store, latency_queries),
                     "setting": setting or "default"})
    return rows


def print_row(row: dict[str, object]) -> None:
    print(f"{row['kind']:>6} {row['vectors']:>9} {row['build_s']:>9} {row['memory_mb']:>9} "
          f"{row['recall_at_10']:>9.4f} {row['p50_ms']:>8.2f} {row['p95_ms']:>8.2f} {row['cpu_p50_ms']:>8.2f}  "
          f"{row.get('setting', '')}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--kinds", nargs="+", default=["flat", "hnsw", "ivfpq"])
    parser.add_argument("--hnsw-size", type=int, default=0, help="build HNSW at this size and extrapolate")
    parser.add_argument("--exact-cache", type=Path, default=None, help="JSON file keeping the exact neighbours")
    parser.add_argument("--queries", type=int, default=1000, help="queries for recall")
    parser.add_argument("--latency-queries", type=int, default=200)
    parser.add_argument("--no-sweep", action="store_true", help="only the default search settings")
    args = parser.parse_args()

    data = ClusteredVectors(dim=args.dim, clusters=max(1, args.size // POINTS_PER_CLUSTER))
    queries = data.queries(args.queries)
    latency_queries = queries[: args.latency_queries]
    print(f"{args.size:,} clustered {args.dim}-d vectors, {len(queries)} queries, "
          f"{faiss.omp_get_max_threads()} FAISS threads; auto kind at this size: {choose_index_kind(args.size)}; "
          f"ivfpq layout {IvfPqParams.for_size(args.size, args.dim)}")
    print(f"{'kind':>6} {'vectors':>9} {'build s':>9} {'mem MB':>9} {'recall@10':>9} {'p50 ms':>8} "
          f"{'p95 ms':>8} {'1thr cpu':>8}")
    rows: list[dict[str, object]] = []
    exact, flat_row = exact_neighbours(data, args.size, queries, queries[:20], args.exact_cache)
    for kind in args.kinds:
        if kind == "flat":
            rows.append(flat_row)
            print_row(flat_row)
            continue
        size = min(args.hnsw_size or args.size, args.size) if kind == "hnsw" else args.size
        truth = exact if size == args.size else exact_neighbours(data, size, queries, queries[:5], None)[0]
        for row in measure(data, size, kind, queries, truth, latency_queries, not args.no_sweep):
            if size != args.size:
                row["build_s_extrapolated"] = round(float(row["build_s"]) * args.size * math.log(args.size)
                                                    / (size * math.log(size)))
            rows.append(row)
            print_row(row)
    print(f"peak RSS {peak_mb():.0f} MB")
    print(json.dumps({"benchmark": "index_scale", "size": args.size, "dim": args.dim,
                      "threads": faiss.omp_get_max_threads(), "peak_rss_mb": round(peak_mb()), "rows": rows}))


if __name__ == "__main__":
    main()
