"""FAISS vector store whose ids are catalog image ids; inner product on L2-normalised vectors.

Three kinds of index, all wrapped in an IndexIDMap2 so ids are catalog ids:

- ``flat``: exact scan. Best below EXACT_SEARCH_MAX_VECTORS.
- ``hnsw``: HNSW graph over the full vectors, the default above EXACT_SEARCH_MAX_VECTORS:
  fast and accurate, but as large as flat and slow to build. FAISS cannot delete graph
  nodes, so removed entries become tombstones that searches skip until a rebuild.
- ``ivfpq``: for memory-bound or memory-mapped serving: inverted lists of PQ codes (residuals, L2 on unit vectors, which ranks like
  inner product) give candidates that are re-ranked with a float16 copy of every vector
  (IndexRefine). The float16 copy keeps recall high and makes `reconstruct` (search by an
  indexed image) exact to about 1e-3. Removal is native. Trained on the vectors it first
  receives; `whysim compact` retrains.

A store may carry the collection's whitening (whysim.indexer.model.whitening): its vectors are then
whitened ones, and the transform is saved in the same file, as the FAISS pre-transform chain
(centering, then the linear map) wrapped around the index, so the vectors and the transform
that made them are replaced together by one atomic rename and can never disagree.

Measurements behind the thresholds and parameters: tests/benchmarks/README.md.
"""
from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from whysim.indexer.index_kinds import INDEX_KINDS
from whysim.indexer.model.whitening import Whitening
from whysim.indexer.sampling import sample_rows

logger = logging.getLogger(__name__)

HNSW_M = 32
HNSW_EF_CONSTRUCTION = 40  # FAISS default; build time grows with it, search breadth (efSearch) makes up recall
# Measured at a million clustered 1280-d vectors: recall@10 0.947 at 128, 0.961 at 192 (4.3 ms
# of one core per query), 0.979 at 384 (tests/benchmarks/README.md).
HNSW_EF_SEARCH = 192
# Removed HNSW entries stay in the graph as tombstones (id -1) until they are this share of
# it; then the graph is rebuilt without them.
HNSW_MAX_TOMBSTONE_SHARE = 0.5
TOMBSTONE = -1
# Vectors re-mapped at a time when a store changes whitening (float64 work space: ~20 MB per 1,000).
REMAP_BLOCK = 16_384


@dataclass(frozen=True)
class IvfPqParams:
    """IVF-PQ layout for a collection of `count` vectors of `dim` dimensions."""

    nlist: int  # inverted lists (coarse k-means centroids)
    m: int  # PQ sub-quantizers, one byte each
    nbits: int
    nprobe: int  # lists visited per query
    k_factor: int  # candidates re-ranked exactly, per result asked for

    @classmethod
    def for_size(cls, count: int, dim: int) -> IvfPqParams:
        # FAISS suggests 4 to 16 * sqrt(n) lists; k-means training dominates the build on
        # two cores, and recall depends on the share of lists probed, not their number, so
        # 2 * sqrt(n). At least 39 training points per centroid.
        nlist = _power_of_two_near(2 * math.sqrt(max(count, 1)))
        nlist = max(1, min(nlist, count // 39))
        # 8 bits per code when there are enough vectors to train 256 centroids.
        nbits = max(1, min(8, int(math.log2(max(count, 2)))))
        # Embeddings' neighbours spread over many cells: an eighth of the lists and 32
        # candidates per result re-ranked give recall@10 0.94 at 100k, 0.86 at 1M
        # (tests/benchmarks/README.md); more candidates help more than more lists.
        return cls(nlist=nlist, m=_pq_subquantizers(dim), nbits=nbits,
                   nprobe=max(1, nlist // 8), k_factor=32)


def _power_of_two_near(value: float) -> int:
    return 1 << max(0, round(math.log2(max(value, 1.0))))


def _pq_subquantizers(dim: int) -> int:
    """Sub-vectors of about 16 dimensions (80 bytes for 1280-d); must divide `dim`."""
    target = max(1, dim // 16)
    return max(m for m in range(1, target + 1) if dim % m == 0)


def as_matrix(vectors: np.ndarray, dim: int) -> np.ndarray:
    matrix = np.ascontiguousarray(vectors, dtype=np.float32)
    if matrix.ndim == 1:
        matrix = matrix[None, :]
    if matrix.ndim != 2 or matrix.shape[1] != dim:
        raise ValueError(f"vectors must have shape (n, {dim}), got {vectors.shape}")
    return matrix


def as_ids(ids: np.ndarray | list[int]) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(ids, dtype=np.int64).reshape(-1))


def checked_entries(ids: np.ndarray | list[int], vectors: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids, vectors) as int64 and float32 (n, dim) arrays, after the checks every store makes."""
    id_array = as_ids(ids)
    matrix = as_matrix(vectors, dim)
    if len(id_array) != len(matrix):
        raise ValueError(f"{len(id_array)} ids for {len(matrix)} vectors")
    if (id_array < 0).any():
        raise ValueError("ids must be non-negative catalog ids")
    return id_array, matrix


def _new_index(dim: int, kind: str, training: np.ndarray | None = None) -> faiss.IndexIDMap2:
    """An empty index of `kind`; ivfpq needs `training` vectors and stays untrained without."""
    if kind == "flat":
        inner = faiss.IndexFlatIP(dim)
    elif kind == "hnsw":
        inner = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        inner.hnsw.efSearch = HNSW_EF_SEARCH
    elif kind == "ivfpq":
        inner = _new_ivfpq(dim, training)
    else:
        raise ValueError(f"unknown index type {kind!r}; choose one of {', '.join(INDEX_KINDS)}")
    wrapper = faiss.IndexIDMap2(inner)
    wrapper.own_fields = True
    inner.this.disown()  # the wrapper frees it
    return wrapper


def _new_ivfpq(dim: int, training: np.ndarray | None) -> faiss.IndexRefine:
    count = 0 if training is None else len(training)
    params = IvfPqParams.for_size(count, dim)
    quantizer = faiss.IndexFlatL2(dim)
    base = faiss.IndexIVFPQ(quantizer, dim, params.nlist, params.m, params.nbits)
    base.own_fields = True
    quantizer.this.disown()
    base.nprobe = params.nprobe
    refine = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_fp16)
    index = faiss.IndexRefine(base, refine)
    index.own_fields = True
    base.this.disown()
    refine.this.disown()
    index.k_factor = params.k_factor
    if training is not None and count:
        base.cp.niter = 10  # converges well enough for candidate lists; halves training time
        base.pq.cp.max_points_per_centroid = 64  # PQ codebooks: 16k points are plenty
        # Small collections train on few points on purpose (nlist and nbits shrink with them).
        base.cp.min_points_per_centroid = 1
        base.pq.cp.min_points_per_centroid = 1
        index.train(training)
    return index


def _kind_of(index: faiss.Index) -> str:
    # The inner wrapper does not own its memory: `index` must stay alive while it is used.
    inner = faiss.downcast_index(index.index)
    if isinstance(inner, faiss.IndexFlat):
        return "flat"
    if isinstance(inner, faiss.IndexHNSW):
        return "hnsw"
    if isinstance(inner, faiss.IndexRefine) and isinstance(faiss.downcast_index(inner.base_index), faiss.IndexIVFPQ):
        return "ivfpq"
    raise ValueError(f"unsupported FAISS index {type(inner).__name__}")


def _sample(vectors: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    if len(vectors) <= count:
        return vectors
    return vectors[sample_rows(len(vectors), count, seed)]


def ivfpq_training_size(count: int, dim: int) -> int:
    """Vectors worth training on: 64 per list (FAISS wants 39 to 256), at least 4096 for the PQ codebooks."""
    params = IvfPqParams.for_size(count, dim)
    return min(count, max(64 * params.nlist, 4096))


def _remove_positions_from_refine(index: faiss.IndexIDMap2, doomed: np.ndarray) -> None:
    """Removes sequence positions from IDMap2(IndexRefine(IVFPQ, SQ)) and renumbers the rest.

    IndexRefine addresses its float16 copy by position, so after removing rows from both
    parts the ids stored in the inverted lists must shift down to stay positions.
    """
    refine = faiss.downcast_index(index.index)
    base = faiss.downcast_index(refine.base_index)
    codes = faiss.downcast_index(refine.refine_index)
    selector = faiss.IDSelectorBatch(len(doomed), faiss.swig_ptr(doomed))
    base.remove_ids(selector)
    codes.remove_ids(selector)
    lists = faiss.downcast_InvertedLists(base.invlists)
    for list_no in range(lists.nlist):
        size = lists.list_size(list_no)
        if size:
            stored = faiss.rev_swig_ptr(lists.get_ids(list_no), size)  # a writable view
            stored -= np.searchsorted(doomed, stored)
    keep = np.ones(int(index.ntotal), dtype=bool)
    keep[doomed] = False
    remaining = faiss.vector_to_array(index.id_map)[keep]
    faiss.copy_array_to_vector(remaining, index.id_map)
    refine.ntotal = int(codes.ntotal)
    index.ntotal = int(codes.ntotal)
    index.construct_rev_map()


class ReadOnlyStore(RuntimeError):
    """The store was memory-mapped for serving and cannot change."""


def _whitening_chain(whitening: Whitening) -> tuple[faiss.CenteringTransform, faiss.LinearTransform]:
    dim = whitening.dim
    centering = faiss.CenteringTransform(dim)
    faiss.copy_array_to_vector(np.ascontiguousarray(whitening.mean, dtype=np.float32), centering.mean)
    centering.is_trained = True
    linear = faiss.LinearTransform(dim, dim, False)
    faiss.copy_array_to_vector(np.ascontiguousarray(whitening.projection, dtype=np.float32).ravel(), linear.A)
    linear.is_trained = True
    return centering, linear


def _unwrap(index: faiss.Index) -> tuple[faiss.Index, Whitening | None]:
    """The id-mapped index inside a saved file, and the whitening chain around it, if any."""
    if not isinstance(index, faiss.IndexPreTransform):
        return index, None
    steps = [faiss.downcast_VectorTransform(index.chain.at(i)) for i in range(index.chain.size())]
    if len(steps) != 2 or not isinstance(steps[0], faiss.CenteringTransform) \
            or not isinstance(steps[1], faiss.LinearTransform):
        raise ValueError("unsupported pre-transform chain in the vector index")
    dim = int(index.d)
    mean = faiss.vector_to_array(steps[0].mean).astype(np.float32)
    projection = faiss.vector_to_array(steps[1].A).astype(np.float32).reshape(dim, dim)
    return faiss.downcast_index(index.index), Whitening(mean, projection)


class VectorStore:
    def __init__(self, index: faiss.IndexIDMap2, kind: str, read_only: bool = False,
                 whitening: Whitening | None = None, container: faiss.Index | None = None) -> None:
        self.index = index
        self.kind = kind
        self.read_only = read_only
        self.whitening = whitening
        """The transform its vectors went through (None: they are the branch's own)."""
        self._container = container  # owns `index` when it was read from a file with a pre-transform
        self._tombstones = int((self._id_map() == TOMBSTONE).sum()) if kind == "hnsw" else 0

    @classmethod
    def empty(cls, dim: int, kind: str = "flat", training: np.ndarray | None = None) -> VectorStore:
        """An empty store. ivfpq trains on `training` (a sample of the collection, see
        `ivfpq_training_size`), or else on the first vectors added."""
        if training is not None:
            training = as_matrix(training, dim)
        return cls(_new_index(dim, kind, training), kind)

    @classmethod
    def build(cls, ids: np.ndarray | list[int], vectors: np.ndarray, kind: str) -> VectorStore:
        """A store of `kind` holding `vectors`; ivfpq trains on a sample of them."""
        matrix = as_matrix(vectors, vectors.shape[-1])
        training = _sample(matrix, ivfpq_training_size(len(matrix), matrix.shape[1])) if kind == "ivfpq" else None
        store = cls.empty(matrix.shape[1], kind, training)
        store.add(ids, matrix)
        return store

    @classmethod
    def load(cls, path: Path, mmap: bool = False) -> VectorStore:
        """Reads an index; `mmap` maps the vector data instead of reading it (for serving:
        pages load on demand and processes share them), and the store is then read-only."""
        # read_index already returns the concrete class and owns it; downcasting again would
        # produce a non-owning wrapper whose memory is freed with the temporary.
        flags = faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY if mmap else 0
        container = faiss.read_index(str(path), flags)
        index, whitening = _unwrap(container)
        if not isinstance(index, faiss.IndexIDMap2):
            raise ValueError(f"{path} is not a whysim vector index")
        return cls(index, _kind_of(index), read_only=mmap, whitening=whitening, container=container)

    @property
    def dim(self) -> int:
        return int(self.index.d)

    @property
    def is_trained(self) -> bool:
        return bool(self.index.index.is_trained)

    def __len__(self) -> int:
        return int(self.index.ntotal) - self._tombstones

    def _id_map(self) -> np.ndarray:
        return faiss.vector_to_array(self.index.id_map).astype(np.int64)

    def ids(self) -> np.ndarray:
        id_map = self._id_map()
        return id_map[id_map != TOMBSTONE] if self._tombstones else id_map

    def vectors(self) -> np.ndarray:
        """Every stored vector, in the order of `ids()` (float16-exact for ivfpq)."""
        if not len(self):
            return np.empty((0, self.dim), dtype=np.float32)
        vectors = self.index.index.reconstruct_n(0, int(self.index.ntotal))
        return vectors[self._id_map() != TOMBSTONE] if self._tombstones else vectors

    def _check_writable(self) -> None:
        if self.read_only:
            raise ReadOnlyStore("this vector store is memory-mapped read-only; load it without mmap to change it")

    def add(self, ids: np.ndarray | list[int], vectors: np.ndarray) -> None:
        self._check_writable()
        id_array, matrix = checked_entries(ids, vectors, self.dim)
        if not len(id_array):
            return
        if not self.is_trained:
            # An ivfpq store created empty trains on the first vectors it receives.
            self.index = _new_index(self.dim, self.kind,
                                    _sample(matrix, ivfpq_training_size(len(matrix), self.dim)))
        self.index.add_with_ids(matrix, id_array)

    def remove(self, ids: np.ndarray | list[int]) -> int:
        self._check_writable()
        id_array = as_ids(ids)
        if not len(id_array) or not len(self):
            return 0
        if self.kind == "flat":
            return int(self.index.remove_ids(id_array))
        id_map = self._id_map()
        doomed = np.flatnonzero(np.isin(id_map, id_array[id_array != TOMBSTONE])).astype(np.int64)
        if not len(doomed):
            return 0
        if self.kind == "ivfpq":
            _remove_positions_from_refine(self.index, doomed)
            return len(doomed)
        # FAISS cannot drop HNSW graph nodes: the removed entries become tombstones, which
        # searches skip and which still route the graph, until a rebuild drops them.
        id_map[doomed] = TOMBSTONE
        faiss.copy_array_to_vector(id_map, self.index.id_map)
        self.index.construct_rev_map()
        self._tombstones += len(doomed)
        if self._tombstones > HNSW_MAX_TOMBSTONE_SHARE * int(self.index.ntotal):
            self.index = self.compacted().index
            self._tombstones = 0
        return len(doomed)

    def reconstruct(self, image_id: int) -> np.ndarray | None:
        if int(image_id) == TOMBSTONE:
            return None
        try:
            return self.index.reconstruct(int(image_id))
        except RuntimeError:
            return None

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by inner product: (scores, ids), each (n, k); missing slots have id -1."""
        matrix = as_matrix(queries, self.dim)
        k = max(1, min(int(k), max(len(self), 1)))
        if not len(self):
            return np.full((len(matrix), k), -np.inf, dtype=np.float32), np.full((len(matrix), k), -1, dtype=np.int64)
        if self._tombstones:
            scores, ids = self._search_skipping_tombstones(matrix, k)
        else:
            scores, ids = self.index.search(matrix, k)
        if self.kind == "ivfpq":
            # Squared L2 between unit vectors: |q - x|^2 = 2 - 2 q.x
            scores = np.where(ids >= 0, 1.0 - scores / 2.0, -np.inf).astype(np.float32)
        return scores, ids

    def _search_skipping_tombstones(self, matrix: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        tombstone = np.array([TOMBSTONE], dtype=np.int64)
        params = faiss.SearchParametersHNSW()
        params.efSearch = faiss.downcast_index(self.index.index).hnsw.efSearch
        # IndexIDMap2 hands the selector catalog ids, so tombstones are the id -1.
        params.sel = faiss.IDSelectorNot(faiss.IDSelectorBatch(1, faiss.swig_ptr(tombstone)))
        return self.index.search(matrix, k, params=params)

    def converted(self, kind: str) -> VectorStore:
        """The same vectors in an index of another kind."""
        if kind == self.kind:
            return self
        return self.compacted(kind)

    def compacted(self, kind: str | None = None) -> VectorStore:
        """A fresh index of the same vectors: drops HNSW tombstones, retrains IVF-PQ on
        today's collection. `kind` changes the index type as well."""
        if not len(self):
            store = VectorStore.empty(self.dim, kind or self.kind)
        else:
            store = VectorStore.build(self.ids(), self.vectors(), kind or self.kind)
        store.whitening = self.whitening
        return store

    def rewhitened(self, whitening: Whitening | None) -> VectorStore:
        """The same images under another whitening (None: the branch's own vectors), in a new
        index of the same kind: each vector is mapped back to the branch's, then forward."""
        if not len(self):
            store = VectorStore.empty(self.dim, self.kind)
        else:
            vectors = self.vectors()
            for start in range(0, len(vectors), REMAP_BLOCK):  # in place, block by block: bounded memory
                block = vectors[start:start + REMAP_BLOCK]
                raw = self.whitening.invert(block) if self.whitening is not None else block
                vectors[start:start + REMAP_BLOCK] = whitening.apply(raw) if whitening is not None else raw
            store = VectorStore.build(self.ids(), vectors, self.kind)
        store.whitening = whitening
        return store

    def branch_vectors(self, limit: int | None = None, seed: int = 0) -> np.ndarray:
        """Stored vectors mapped back to the branch's own (unwhitened): all of them, in the order
        of `ids()`, or a seeded sample of at most `limit`."""
        ids = self.ids()
        if limit is not None and len(ids) > limit:
            vectors = np.stack([self.index.reconstruct(int(i)) for i in ids[sample_rows(len(ids), limit, seed)]])
        else:
            vectors = self.vectors()
        return self.whitening.invert(vectors) if self.whitening is not None and len(vectors) else vectors

    def save(self, path: Path) -> None:
        """Writes to a temporary file, syncs it, then renames over `path`: readers and crashes
        only ever see the old or the new index, never half of one."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _temp_path(path, os.getpid())
        try:
            if self.whitening is None:
                faiss.write_index(self.index, str(tmp))
            else:
                chain = _whitening_chain(self.whitening)
                wrapper = faiss.IndexPreTransform(self.index)  # does not own the index or the chain
                for step in reversed(chain):
                    wrapper.prepend_transform(step)
                faiss.write_index(wrapper, str(tmp))
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


def _temp_path(path: Path, owner: int | str) -> Path:
    return path.with_name(f".{path.name}.{owner}.tmp")


def remove_stale_temp_files(path: Path) -> int:
    """Deletes what saves of `path` killed mid-write left behind; only a writer holding the
    data directory's lock may call it (no other save can be in flight then)."""
    stale = list(path.parent.glob(_temp_path(path, "*").name))
    for leftover in stale:
        leftover.unlink(missing_ok=True)
    return len(stale)
