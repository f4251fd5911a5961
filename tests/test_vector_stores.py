"""The vector-store contract on FAISS, Milvus Lite and a Milvus server: the same calls, the same answers.

Each store is reached through its location, as the indexer and the search engine reach it;
ids are catalog ids (sparse, non-sequential), vectors are unit vectors.
"""
from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import MILVUS_SERVER, encode, make_picture
from milvus_server import MilvusTestServer
from whysim_cli import SMALL, index_json, snapshot, whysim

from whysim.indexer.catalog.database import open_catalog_engine
from whysim.indexer.catalog.repository import Catalog
from whysim.indexer.datadir import DataDir
from whysim.indexer.pipeline.reconcile import merge_repeated_ids
from whysim.indexer.vector_stores.choice import VectorStoreSpec, parse_vector_store
from whysim.indexer.vector_stores.faiss_location import FaissLocation
from whysim.indexer.vector_stores.milvus_generations import MilvusLocation
from whysim.indexer.vector_stores.protocol import VectorLocation
from whysim.indexer.vectors import VectorStore

DIM = 32
IDS = np.arange(300, dtype=np.int64) * 7 + 1000
ENGINES = ["faiss", "milvus", pytest.param("milvus-server", marks=MILVUS_SERVER)]


def unit_vectors(count: int, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((count, DIM)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


VECTORS = unit_vectors(len(IDS))


def make_location(engine: str, place: Path, server: MilvusTestServer | None = None) -> tuple[VectorLocation, Catalog]:
    """FAISS, Milvus Lite or (given the session's `server`) a new collection on a Milvus server."""
    catalog = Catalog(open_catalog_engine(f"sqlite:///{place / 'catalog.sqlite3'}"))
    if engine == "faiss":
        return FaissLocation(place / "vectors.faiss"), catalog
    if engine == "milvus-server":
        assert server is not None
        return MilvusLocation(server.uri, server.collection_name(), catalog), catalog
    lite = str(place / "vectors.db")
    return MilvusLocation(lite, "whysim", catalog, lite), catalog


@pytest.fixture(params=ENGINES)
def location(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[VectorLocation]:
    server = request.getfixturevalue("milvus_server") if request.param == "milvus-server" else None
    opened, catalog = make_location(request.param, tmp_path, server)
    yield opened
    opened.close()
    catalog.engine.dispose()


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_search_finds_each_vector_under_its_catalog_id(location: VectorLocation, kind: str) -> None:
    store = location.empty(DIM, kind)
    store.add(IDS, VECTORS)
    location.save(store)
    scores, ids = store.search(VECTORS[:40], 3)
    assert store.kind == kind and len(store) == len(IDS) and store.dim == DIM
    assert (ids[:, 0] == IDS[:40]).all()
    assert np.allclose(scores[:, 0], 1.0, atol=1e-4) and (scores[:, 0] >= scores[:, 1]).all()


def test_remove_add_reconstruct_ids_and_vectors(location: VectorLocation) -> None:
    store = location.empty(DIM)
    store.add(IDS, VECTORS)
    doomed = IDS[::3]
    assert store.remove(np.append(doomed, 999_999)) == len(doomed)  # unknown ids are ignored
    location.save(store)
    kept = ~np.isin(IDS, doomed)
    assert len(store) == kept.sum()
    assert np.array_equal(np.sort(store.ids()), IDS[kept])
    order = np.argsort(store.ids())
    assert np.allclose(store.vectors()[order], VECTORS[kept], atol=1e-6)  # in the order of ids()
    assert store.reconstruct(int(doomed[0])) is None
    assert np.allclose(store.reconstruct(int(IDS[1])), VECTORS[1], atol=1e-6)

    store.remove(IDS[:5])  # changed images, as the writer replaces them: remove, then add
    store.add(IDS[:5], VECTORS[5:10])
    location.save(store)
    assert len(store) == kept.sum() + 2  # ids 0 and 3 had been removed above
    assert len(set(store.ids().tolist())) == len(store)
    assert np.allclose(store.reconstruct(int(IDS[1])), VECTORS[6], atol=1e-6)


def test_a_saved_store_reopens_with_everything_and_a_new_stamp(tmp_path: Path, location: VectorLocation) -> None:
    assert not location.exists()
    store = location.empty(DIM, "hnsw")
    store.add(IDS, VECTORS)
    location.save(store)
    first = location.stamp()
    store.remove(IDS[:10])
    location.save(store)
    assert first is not None and location.stamp() != first
    expected = store.search(VECTORS[10:30], 5)
    location.close()

    again = location.load()
    assert location.exists() and again.kind == "hnsw" and len(again) == len(IDS) - 10
    found = again.search(VECTORS[10:30], 5)
    assert np.array_equal(found[1], expected[1]) and np.allclose(found[0], expected[0], atol=1e-5)


def test_conversion_and_compaction_keep_ids(location: VectorLocation) -> None:
    store = location.empty(DIM, "flat")
    store.add(IDS, VECTORS)
    store.remove(IDS[:20])
    converted = store.converted("hnsw")
    location.save(converted)
    assert converted.kind == "hnsw" and np.array_equal(np.sort(converted.ids()), IDS[20:])
    compacted = converted.compacted("flat")
    location.save(compacted)
    assert compacted.kind == "flat" and len(compacted) == len(IDS) - 20
    assert (compacted.search(VECTORS[20:40], 1)[1][:, 0] == IDS[20:40]).all()


def test_milvus_flat_returns_the_same_top_k_as_faiss_flat(tmp_path: Path) -> None:
    vectors = unit_vectors(2000, seed=1)
    ids = np.arange(len(vectors), dtype=np.int64) * 3 + 11
    queries = unit_vectors(50, seed=2)
    faiss_store = VectorStore.build(ids, vectors, "flat")
    milvus, catalog = make_location("milvus", tmp_path)
    try:
        store = milvus.empty(DIM, "flat")
        store.add(ids, vectors)
        milvus.save(store)
        faiss_scores, faiss_ids = faiss_store.search(queries, 10)
        milvus_scores, milvus_ids = store.search(queries, 10)
    finally:
        milvus.close()
        catalog.engine.dispose()
    assert np.array_equal(milvus_ids, faiss_ids)
    assert np.allclose(milvus_scores, faiss_scores, atol=1e-5)


def test_empty_stores_answer_with_empty_slots(location: VectorLocation) -> None:
    store = location.empty(DIM)
    scores, ids = store.search(VECTORS[:2], 3)
    assert (ids == -1).all() and np.isneginf(scores).all() and len(store) == 0
    assert store.ids().size == 0 and store.vectors().shape == (0, DIM)


def test_vector_store_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert parse_vector_store("faiss") == VectorStoreSpec("faiss")
    lite = parse_vector_store("milvus:sub/v.db")
    assert lite.lite_path == str(tmp_path / "sub" / "v.db") and str(lite) == f"milvus:{tmp_path / 'sub' / 'v.db'}"
    server = parse_vector_store("milvus://milvus.example:19531/photos_2024")
    assert (server.uri, server.collection, server.lite_path) == ("http://milvus.example:19531", "photos_2024", None)
    assert str(server) == "milvus://milvus.example:19531/photos_2024"
    for bad in ("milvus:vectors.faiss", "milvus://:19530/x", "milvus://host/a-b", "qdrant://x"):
        with pytest.raises(ValueError, match="milvus|vector store"):
            parse_vector_store(bad)


def test_switching_stores_refills_the_new_one_from_the_images(make_collection, tmp_path: Path) -> None:
    root = make_collection({"blobs": 3, "stripes": 3})
    datadir = DataDir(tmp_path / "data")
    index_json(root, datadir)
    lite = f"milvus:{tmp_path / 'vectors.db'}"
    assert index_json(root, datadir, "--vector-store", lite)["indexed"] == 6  # Milvus starts empty
    changed = root / "blobs" / "blobs_000.jpg"
    changed.write_bytes(encode(make_picture(4242, kind="stripes")))
    index_json(root, datadir)  # changed on Milvus: the old FAISS file still holds its old vector
    on_milvus = snapshot(datadir).vector("blobs/blobs_000.jpg")
    report = index_json(root, datadir, "--vector-store", "faiss")
    assert report["indexed"] == 6  # re-embedded from the images, not trusted from the old file
    back = snapshot(datadir)
    back.assert_consistent()
    assert float(np.dot(back.vector("blobs/blobs_000.jpg"), on_milvus)) >= 0.9999


HOLD_LITE_FILE = """
import sys, time
from whysim.indexer.vector_stores.milvus import connect
connect(sys.argv[1], sys.argv[1])
print('open', flush=True)
time.sleep(600)
"""


def test_a_lite_file_held_by_another_process_is_a_clear_error(make_collection, tmp_path: Path) -> None:
    root = make_collection({"blobs": 2})
    lite = str(tmp_path / "vectors.db")
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LITE_FILE, lite], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        refused = whysim("index", root, "--data-dir", tmp_path / "data", *SMALL, "--vector-store", f"milvus:{lite}",
                         exit_code=1)
    finally:
        holder.kill()
        holder.wait()
    assert "one process at a time" in refused.output and "Traceback" not in refused.output


def test_an_index_type_milvus_lacks_is_refused_before_any_work(make_collection, tmp_path: Path) -> None:
    root = make_collection({"blobs": 2})
    datadir = DataDir(tmp_path / "data")
    lite = f"milvus:{tmp_path / 'vectors.db'}"
    refused = whysim("index", root, "--data-dir", datadir.root, *SMALL, "--vector-store", lite,
                     "--index-type", "ivfpq", exit_code=1)
    assert "not available with the vector store" in refused.output
    assert index_json(root, datadir, "--vector-store", lite)["indexed"] == 2  # nothing was remembered
    assert "not available" in whysim("compact", "--data-dir", datadir.root, "--index-type", "ivfpq",
                                     exit_code=1).output


def test_reconcile_merges_an_id_held_twice(tmp_path: Path) -> None:
    """Milvus Lite can replay an upsert when reopened after a kill and hold an id twice (seen in
    test_crash_consistency); a FAISS store given the same id twice holds it the same way."""
    store = VectorStore.build(IDS[:20], VECTORS[:20], "flat")
    store.add(IDS[3:4], VECTORS[3:4])
    assert sorted(store.ids().tolist()).count(int(IDS[3])) == 2
    assert merge_repeated_ids(store) == 1
    assert sorted(store.ids().tolist()) == sorted(IDS[:20].tolist())
    assert np.allclose(store.reconstruct(int(IDS[3])), VECTORS[3], atol=1e-6)
    assert merge_repeated_ids(store) == 0
