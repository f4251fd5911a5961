"""Exact-search latency against collection size: where `flat` stops being fast enough.

Builds flat stores of growing size from clustered synthetic vectors (synthetic_vectors.py)
and times single queries, the way the search server asks them, with all the machine's
cores available to FAISS. Prints one row per size and a JSON line. The largest size whose
p50 stays within --budget-ms is what indexer/vectors.py EXACT_SEARCH_MAX_VECTORS should be.

    .venv/bin/python tests/benchmarks/bench_index_threshold.py [--sizes 10000 25000 50000 100000]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthetic_vectors import ClusteredVectors  # noqa: E402

from whysim.indexer.index_kinds import EXACT_SEARCH_MAX_VECTORS  # noqa: E402
from whysim.indexer.vectors import VectorStore  # noqa: E402


def single_query_ms(store: VectorStore, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Wall ms with all FAISS threads, and CPU ms of the calling thread with one FAISS thread
    (the figure to trust when other jobs share the machine and inflate wall times)."""
    store.search(queries[:3], k)  # warm caches
    wall, cpu = [], []
    threads = faiss.omp_get_max_threads()
    for query in queries:
        started = time.perf_counter()
        store.search(query[None, :], k)
        wall.append((time.perf_counter() - started) * 1000)
    faiss.omp_set_num_threads(1)
    for query in queries:
        started = time.thread_time()
        store.search(query[None, :], k)
        cpu.append((time.thread_time() - started) * 1000)
    faiss.omp_set_num_threads(threads)
    return np.asarray(wall), np.asarray(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5_000, 10_000, 15_000, 20_000, 50_000, 100_000])
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--budget-ms", type=float, default=5.0, help="p50 a query may take")
    args = parser.parse_args()

    data = ClusteredVectors(dim=args.dim)
    queries = data.queries(args.queries)
    rows = []
    print(f"flat single-query latency, {args.dim}-d, {faiss.omp_get_max_threads()} FAISS threads")
    print(f"{'vectors':>9} {'p50 ms':>8} {'p95 ms':>8} {'cpu p50':>8} {'MB':>7}")
    store = VectorStore.empty(args.dim, "flat")
    for size in sorted(args.sizes):
        for start, chunk in data.base(size):
            if start + len(chunk) > len(store):
                skip = max(0, len(store) - start)
                store.add(np.arange(start + skip, start + len(chunk)), chunk[skip:])
        wall, cpu = single_query_ms(store, queries)
        row = {"vectors": size, "p50_ms": round(float(np.percentile(wall, 50)), 3),
               "p95_ms": round(float(np.percentile(wall, 95)), 3), "cpu_p50_ms": round(float(np.percentile(cpu, 50)), 3),
               "mb": round(size * args.dim * 4 / 1e6, 1)}
        rows.append(row)
        print(f"{size:>9} {row['p50_ms']:>8.2f} {row['p95_ms']:>8.2f} {row['cpu_p50_ms']:>8.2f} {row['mb']:>7.0f}")
    fits = [row["vectors"] for row in rows if min(row["p50_ms"], row["cpu_p50_ms"]) <= args.budget_ms]
    print(f"largest size within {args.budget_ms} ms p50 (wall, or CPU on a busy machine): {max(fits) if fits else 'none'} "
          f"(EXACT_SEARCH_MAX_VECTORS is {EXACT_SEARCH_MAX_VECTORS})")
    print(json.dumps({"benchmark": "index_threshold", "dim": args.dim, "threads": faiss.omp_get_max_threads(),
                      "rows": rows}))


if __name__ == "__main__":
    main()
