"""The kinds of vector index and when each is chosen, apart from FAISS so that the command line
can offer them without loading it."""
from __future__ import annotations

INDEX_KINDS = ("flat", "hnsw", "ivfpq")
INDEX_TYPE_SETTING = "index_type"  # the catalog setting of a kind chosen by hand (absent: chosen by size)
# Largest collection searched exactly: the size where one 1280-d query still takes about
# 5 ms on two quiet cores (tests/benchmarks/bench_index_threshold.py, p50 wall ms: 5k 0.56,
# 10k 3.2, 12.5k 4.1, 15k 4.9, 17.5k 5.7, 20k 6.4, 50k 16.0, 100k 31.7). Above it, HNSW.
EXACT_SEARCH_MAX_VECTORS = 15_000


def choose_index_kind(count: int, exact_max: int = EXACT_SEARCH_MAX_VECTORS) -> str:
    """Exact search while a scan is fast enough, HNSW above (tests/benchmarks/README.md: at a
    million vectors HNSW gives recall@10 0.96 in about 4 ms of one core, IVF-PQ 0.86 in 7)."""
    return "flat" if count <= exact_max else "hnsw"
