"""Every FAISS index kind through the VectorStore contract: ids are catalog ids, always."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from whysim.indexer.index_kinds import INDEX_KINDS, choose_index_kind
from whysim.indexer.vectors import IvfPqParams, ReadOnlyStore, VectorStore

DIM = 32


def unit_vectors(count: int, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((count, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


# Sparse, non-sequential ids like a catalog's after deletions.
IDS = np.arange(600, dtype=np.int64) * 7 + 1000
VECTORS = unit_vectors(len(IDS))


@pytest.mark.parametrize("kind", INDEX_KINDS)
def test_search_finds_each_vector_under_its_catalog_id(kind: str) -> None:
    store = VectorStore.build(IDS, VECTORS, kind)
    scores, ids = store.search(VECTORS[:50], 3)
    assert store.kind == kind and len(store) == len(IDS)
    assert (ids[:, 0] == IDS[:50]).all()
    assert np.allclose(scores[:, 0], 1.0, atol=2e-3)  # inner product of a unit vector with itself
    assert (scores[:, 0] >= scores[:, 1]).all()


@pytest.mark.parametrize("kind", INDEX_KINDS)
def test_remove_then_add_keeps_ids_and_vectors_paired(kind: str) -> None:
    store = VectorStore.build(IDS, VECTORS, kind)
    doomed = IDS[::3]
    assert store.remove(np.append(doomed, 999_999)) == len(doomed)  # unknown ids are ignored
    assert len(store) == len(IDS) - len(doomed)
    assert set(store.ids().tolist()) == set(IDS.tolist()) - set(doomed.tolist())
    assert store.reconstruct(int(doomed[0])) is None
    survivors = np.flatnonzero(~np.isin(IDS, doomed))
    _, ids = store.search(VECTORS[survivors[:40]], 1)
    assert (ids[:, 0] == IDS[survivors[:40]]).all()
    for row in survivors[:5]:
        assert np.allclose(store.reconstruct(int(IDS[row])), VECTORS[row], atol=2e-3)

    store.add(doomed, VECTORS[::3])  # back under the same ids
    _, ids = store.search(VECTORS[:30], 1)
    assert (ids[:, 0] == IDS[:30]).all()


@pytest.mark.parametrize("kind", INDEX_KINDS)
def test_save_load_and_memory_mapped_load(kind: str, tmp_path: Path) -> None:
    path = tmp_path / "vectors.faiss"
    store = VectorStore.build(IDS, VECTORS, kind)
    store.remove(IDS[:10])
    store.save(path)
    expected = store.search(VECTORS[10:40], 5)
    for mmap in (False, True):
        loaded = VectorStore.load(path, mmap=mmap)
        assert loaded.kind == kind and loaded.read_only == mmap
        assert np.array_equal(loaded.ids(), store.ids())
        scores, ids = loaded.search(VECTORS[10:40], 5)
        assert np.array_equal(ids, expected[1]) and np.allclose(scores, expected[0])
        assert np.allclose(loaded.reconstruct(int(IDS[20])), VECTORS[20], atol=2e-3)
    with pytest.raises(ReadOnlyStore):
        VectorStore.load(path, mmap=True).add([1], VECTORS[:1])


@pytest.mark.parametrize("source, target", [("flat", "ivfpq"), ("ivfpq", "hnsw"), ("hnsw", "flat")])
def test_conversion_keeps_ids(source: str, target: str) -> None:
    converted = VectorStore.build(IDS, VECTORS, source).converted(target)
    assert converted.kind == target
    assert sorted(converted.ids().tolist()) == sorted(IDS.tolist())
    _, ids = converted.search(VECTORS[:20], 1)
    assert (ids[:, 0] == IDS[:20]).all()


def test_empty_ivfpq_trains_on_first_vectors_added() -> None:
    store = VectorStore.empty(DIM, "ivfpq")
    assert not store.is_trained
    scores, ids = store.search(VECTORS[:2], 3)
    assert (ids == -1).all()
    store.add(IDS[:5], VECTORS[:5])  # even a handful trains a (small) index
    assert store.is_trained
    _, ids = store.search(VECTORS[:5], 1)
    assert (ids[:, 0] == IDS[:5]).all()


def test_ivfpq_recall_on_clustered_vectors() -> None:
    """The default layout returns the exact top 10 on well-separated data."""
    rng = np.random.default_rng(3)
    centres = rng.standard_normal((40, DIM)).astype(np.float32)
    base = centres[rng.integers(0, 40, 4000)] + 0.3 * rng.standard_normal((4000, DIM)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    queries = base[:100] + 0.05 * rng.standard_normal((100, DIM)).astype(np.float32)
    ids = np.arange(len(base)) + 10
    _, exact = VectorStore.build(ids, base, "flat").search(queries, 10)
    _, approx = VectorStore.build(ids, base, "ivfpq").search(queries, 10)
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact)])
    assert recall >= 0.95


def test_auto_choice_by_size() -> None:
    assert choose_index_kind(100, exact_max=100) == "flat"
    assert choose_index_kind(101, exact_max=100) == "hnsw"
    assert choose_index_kind(0) == "flat"


def test_ivfpq_layout_scales_with_the_collection() -> None:
    small, large = IvfPqParams.for_size(300, 1280), IvfPqParams.for_size(1_000_000, 1280)
    assert small.nlist * 39 <= 300 and small.nbits == 8
    assert large.nlist == 2048 and large.nprobe == 256 and 1280 % large.m == 0
    assert IvfPqParams.for_size(10, 1280).nbits == 3  # fewer than 256 vectors: smaller codebooks


def test_hnsw_rebuilds_once_tombstones_outnumber_live_entries() -> None:
    store = VectorStore.build(IDS, VECTORS, "hnsw")
    store.remove(IDS[:200])
    assert int(store.index.ntotal) == len(IDS)  # tombstones only
    store.remove(IDS[200:400])
    assert int(store.index.ntotal) == len(store) == 200  # rebuilt without them
    _, ids = store.search(VECTORS[400:450], 1)
    assert (ids[:, 0] == IDS[400:450]).all()
