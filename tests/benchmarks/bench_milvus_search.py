"""Search latency at matched recall@10: Milvus Lite and a Milvus server against FAISS HNSW, same vectors, same run.

Builds both indexes over --vectors clustered 1280-d unit vectors (synthetic_vectors.py,
about 30 per cluster), with the same graph parameters (M, efConstruction: indexer/vectors.py
and indexer/vector_stores/milvus.py), then sweeps the search breadth (ef) of each and prints
recall@10 against an exact scan and the p50/p95 wall time of one query (k=10, one at a time,
as whysim searches). Milvus is reached as whysim reaches it: MilvusStore through pymilvus, on
a Milvus Lite file and on a Milvus standalone server (the `milvus` package, started as the tests
start it: tests/milvus_server.py; its searches are strongly consistent, so each waits for the
server's next time tick, 20 ms there).
Finally it pairs each Milvus setting with the FAISS setting of the nearest recall at or above
it and prints the latency ratios.

    .venv/bin/python tests/benchmarks/bench_milvus_search.py [--vectors 100000] [--queries 200]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ (milvus_server)

from bench_support import tune_store  # noqa: E402
from milvus_server import start_milvus_server  # noqa: E402
from synthetic_vectors import ClusteredVectors  # noqa: E402

from whysim.indexer.vector_stores import milvus  # noqa: E402
from whysim.indexer.vector_stores.milvus import LITE_SERVERS, MilvusStore, connect  # noqa: E402
from whysim.indexer.vectors import HNSW_EF_CONSTRUCTION, HNSW_M, VectorStore  # noqa: E402

K = 10
EF_SWEEP = (16, 32, 64, 128, 192, 256)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth, strict=True)]))


def timed_searches(search, queries: np.ndarray) -> tuple[np.ndarray, list[float]]:
    for query in queries[:20]:  # warm-up: caches, lazily loaded index parts
        search(query[None, :])
    ids, times = [], []
    for query in queries:
        started = time.perf_counter()
        ids.append(search(query[None, :])[0])
        times.append((time.perf_counter() - started) * 1000)
    return np.array(ids), times


def summary(times: list[float]) -> tuple[float, float]:
    return float(np.percentile(times, 50)), float(np.percentile(times, 95))


def wait_for_index(client, collection: str, total: int, timeout_s: float = 3600) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        described = client.describe_index(collection, "vector")
        if int(described.get("indexed_rows", 0)) >= total and described.get("state", "Finished") == "Finished":
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"Milvus index not built after {timeout_s} s: {described}")
        time.sleep(1)


def no_rebuilds(dim: int, kind: str) -> MilvusStore:
    raise RuntimeError("the benchmark builds one collection")


def milvus_sweep(client, ids: np.ndarray, vectors: np.ndarray, queries: np.ndarray,
                 truth: np.ndarray) -> tuple[float, list[tuple[int, float, float, float]]]:
    """(build seconds, [(ef, recall@10, p50 ms, p95 ms)]) of one Milvus deployment."""
    started = time.perf_counter()
    store = MilvusStore.create(client, "bench", vectors.shape[1], "hnsw", no_rebuilds)
    store.add(ids, vectors)
    client.flush("bench")
    client.compact("bench")  # one segment, as a long-lived collection ends up
    wait_for_index(client, "bench", len(vectors))
    build = time.perf_counter() - started
    store = MilvusStore.open(client, "bench", no_rebuilds)
    rows = []
    for ef in EF_SWEEP:
        milvus.HNSW_EF_SEARCH = ef  # the search breadth MilvusStore asks for
        found, times = timed_searches(lambda q: store.search(q, K)[1], queries)
        rows.append((ef, recall(found, truth), *summary(times)))
    return build, rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()

    generator = ClusteredVectors(clusters=max(1, args.vectors // 30))
    vectors = np.concatenate([chunk for _, chunk in generator.base(args.vectors)])
    ids = np.arange(len(vectors), dtype=np.int64) + 1
    queries = generator.queries(args.queries)
    faiss.omp_set_num_threads(1)  # one core per query, as the single-threaded Milvus Lite search
    exact = VectorStore.build(ids, vectors, "flat")
    truth = exact.search(queries, K)[1]
    _, exact_times = timed_searches(lambda q: exact.search(q, K)[1], queries)
    log(f"{len(vectors)} vectors; exact scan p50 {summary(exact_times)[0]:.2f} ms")

    faiss.omp_set_num_threads(2)  # build on both cores
    started = time.perf_counter()
    hnsw = VectorStore.build(ids, vectors, "hnsw")
    faiss_build = time.perf_counter() - started
    faiss.omp_set_num_threads(1)
    faiss_rows = []
    for ef in EF_SWEEP:
        tune_store(hnsw, ef_search=ef)
        found, times = timed_searches(lambda q: hnsw.search(q, K)[1], queries)
        faiss_rows.append((ef, recall(found, truth), *summary(times)))

    engines: dict[str, tuple[float, list]] = {}
    with tempfile.TemporaryDirectory(prefix="whysim-milvus-bench-") as scratch:
        lite = str(Path(scratch) / "vectors.db")
        client = connect(lite, lite)
        try:
            engines["Milvus Lite"] = milvus_sweep(client, ids, vectors, queries, truth)
        finally:
            client.close()
            LITE_SERVERS.release(lite)
    server = start_milvus_server()
    try:
        client = connect(server.uri, None)
        try:
            engines["Milvus srv"] = milvus_sweep(client, ids, vectors, queries, truth)
        finally:
            client.close()
    finally:
        server.stop()

    print(f"{len(vectors)} clustered 1280-d vectors, {len(queries)} queries, k={K}, one query at a time; "
          f"HNSW M={HNSW_M} efConstruction={HNSW_EF_CONSTRUCTION}")
    builds = ", ".join(f"{name} {seconds:.0f} s" for name, (seconds, _) in engines.items())
    print(f"build: FAISS HNSW {faiss_build:.0f} s; insert + flush + HNSW: {builds}")
    print(f"exact FAISS scan: p50 {summary(exact_times)[0]:.2f} ms, p95 {summary(exact_times)[1]:.2f} ms")
    print(f"{'engine':<12} {'ef':>4} {'recall@10':>9} {'p50 ms':>8} {'p95 ms':>8}")
    for name, rows in (("FAISS HNSW", faiss_rows), *((name, rows) for name, (_, rows) in engines.items())):
        for ef, rec, p50, p95 in rows:
            print(f"{name:<12} {ef:>4} {rec:>9.3f} {p50:>8.2f} {p95:>8.2f}")
    print("matched recall (the FAISS setting with the nearest recall at or above Milvus's):")
    for name, (_, rows) in engines.items():
        for ef, rec, p50, p95 in rows:
            candidates = [row for row in faiss_rows if row[1] >= rec - 1e-9] or [max(faiss_rows, key=lambda r: r[1])]
            match = min(candidates, key=lambda row: row[1] - rec)
            print(f"  {name} ef {ef} (recall {rec:.3f}) vs FAISS ef {match[0]} (recall {match[1]:.3f}): "
                  f"p50 {p50:.2f} vs {match[2]:.2f} ms ({p50 / match[2]:.1f}x), "
                  f"p95 {p95:.2f} vs {match[3]:.2f} ms ({p95 / match[3]:.1f}x)")


if __name__ == "__main__":
    main()
