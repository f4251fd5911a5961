"""FAISS vector store whose ids are catalog image ids; inner product on L2-normalised vectors."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import faiss
import numpy as np

logger = logging.getLogger(__name__)

INDEX_KINDS = ("flat", "hnsw")
# Up to this many vectors an exact (flat) scan answers a query within a few milliseconds on
# two cores at 1280 dimensions (tests/benchmarks/bench_index_threshold.py); above it we
# switch to HNSW, which keeps latency flat as the collection grows.
EXACT_SEARCH_MAX_VECTORS = 50_000
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 96


def choose_index_kind(count: int) -> str:
    return "flat" if count <= EXACT_SEARCH_MAX_VECTORS else "hnsw"


def _as_matrix(vectors: np.ndarray, dim: int) -> np.ndarray:
    matrix = np.ascontiguousarray(vectors, dtype=np.float32)
    if matrix.ndim == 1:
        matrix = matrix[None, :]
    if matrix.ndim != 2 or matrix.shape[1] != dim:
        raise ValueError(f"vectors must have shape (n, {dim}), got {vectors.shape}")
    return matrix


def _as_ids(ids: np.ndarray | list[int]) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(ids, dtype=np.int64).reshape(-1))


def _new_index(dim: int, kind: str) -> faiss.IndexIDMap2:
    if kind == "flat":
        inner = faiss.IndexFlatIP(dim)
    elif kind == "hnsw":
        inner = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        inner.hnsw.efSearch = HNSW_EF_SEARCH
    else:
        raise ValueError(f"unknown index type {kind!r}; choose one of {', '.join(INDEX_KINDS)}")
    return faiss.IndexIDMap2(inner)


def _kind_of(index: faiss.Index) -> str:
    # The inner wrapper does not own its memory: `index` must stay alive while it is used.
    inner = faiss.downcast_index(index.index)
    if isinstance(inner, faiss.IndexFlat):
        return "flat"
    if isinstance(inner, faiss.IndexHNSW):
        return "hnsw"
    raise ValueError(f"unsupported FAISS index {type(inner).__name__}")


class VectorStore:
    def __init__(self, index: faiss.IndexIDMap2, kind: str) -> None:
        self.index = index
        self.kind = kind

    @classmethod
    def empty(cls, dim: int, kind: str = "flat") -> VectorStore:
        return cls(_new_index(dim, kind), kind)

    @classmethod
    def load(cls, path: Path) -> VectorStore:
        # read_index already returns the concrete class and owns it; downcasting again would
        # produce a non-owning wrapper whose memory is freed with the temporary.
        index = faiss.read_index(str(path))
        if not isinstance(index, faiss.IndexIDMap2):
            raise ValueError(f"{path} is not a whysim vector index")
        return cls(index, _kind_of(index))

    @property
    def dim(self) -> int:
        return int(self.index.d)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def ids(self) -> np.ndarray:
        return faiss.vector_to_array(self.index.id_map).astype(np.int64)

    def add(self, ids: np.ndarray | list[int], vectors: np.ndarray) -> None:
        id_array = _as_ids(ids)
        matrix = _as_matrix(vectors, self.dim)
        if len(id_array) != len(matrix):
            raise ValueError(f"{len(id_array)} ids for {len(matrix)} vectors")
        if len(id_array):
            self.index.add_with_ids(matrix, id_array)

    def remove(self, ids: np.ndarray | list[int]) -> int:
        id_array = _as_ids(ids)
        if not len(id_array) or not len(self):
            return 0
        if self.kind == "flat":
            return int(self.index.remove_ids(id_array))
        # HNSW graphs cannot drop nodes: rebuild from the vectors that stay.
        present = self.ids()
        keep = ~np.isin(present, id_array)
        removed = int((~keep).sum())
        if removed:
            vectors = self.index.index.reconstruct_n(0, len(self))
            rebuilt = _new_index(self.dim, self.kind)
            rebuilt.add_with_ids(np.ascontiguousarray(vectors[keep]), np.ascontiguousarray(present[keep]))
            self.index = rebuilt
        return removed

    def reconstruct(self, image_id: int) -> np.ndarray | None:
        try:
            return self.index.reconstruct(int(image_id))
        except RuntimeError:
            return None

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by inner product: (scores, ids), each (n, k); missing slots have id -1."""
        matrix = _as_matrix(queries, self.dim)
        k = max(1, min(int(k), max(len(self), 1)))
        scores, ids = self.index.search(matrix, k)
        return scores, ids

    def converted(self, kind: str) -> VectorStore:
        """The same vectors in an index of another kind."""
        if kind == self.kind:
            return self
        target = VectorStore.empty(self.dim, kind)
        if len(self):
            vectors = self.index.index.reconstruct_n(0, len(self))
            target.add(self.ids(), vectors)
        return target

    def save(self, path: Path) -> None:
        """Writes to a temporary file, syncs it, then renames over `path`: readers and crashes
        only ever see the old or the new index, never half of one."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            faiss.write_index(self.index, str(tmp))
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def remove_stale_saves(path: Path) -> int:
    """Deletes the temporary files that a killed `VectorStore.save` left next to `path`.

    Call it only while holding the data directory's writer lock, when no save can be running.
    """
    stale = list(path.parent.glob(f".{path.name}.*.tmp"))
    for file in stale:
        file.unlink(missing_ok=True)
    return len(stale)
