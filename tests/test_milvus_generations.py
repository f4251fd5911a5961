"""Milvus collections in generations behind an alias: whitened vectors as in the FAISS file, the
same answers, incremental runs in the served generation, refits and rebuilds switched whole (also
under kill -9), generations nobody serves dropped. On Milvus Lite and on a Milvus server."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import MILVUS_SERVER
from milvus_server import MilvusTestServer
from test_whitening import add_pictures
from whysim_cli import index_json, live_store, whysim_json

from whysim.indexer.catalog.database import open_catalog_engine
from whysim.indexer.catalog.repository import Catalog
from whysim.indexer.datadir import DataDir
from whysim.indexer.model.whitening import MIN_VECTORS
from whysim.indexer.vector_stores import milvus_generations
from whysim.indexer.vector_stores.choice import open_location
from whysim.indexer.vector_stores.milvus_generations import MilvusLocation
from whysim.indexer.vectors import VectorStore

pytestmark = pytest.mark.slow
PICTURES = MIN_VECTORS + 6  # an instance-level collection just big enough to be whitened


@pytest.fixture(params=["lite", pytest.param("server", marks=MILVUS_SERVER)])
def milvus_store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A --vector-store value: a Milvus Lite file, or a new collection on the session's server."""
    if request.param == "server":
        server: MilvusTestServer = request.getfixturevalue("milvus_server")
        return server.vector_store("gen")
    return f"milvus:{tmp_path / 'vectors.db'}"


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    add_pictures(root, 0, PICTURES)
    return root


def generations_of(datadir: DataDir) -> tuple[milvus_generations.GenerationRecord, str | None, set[str]]:
    """(catalog record, collection the alias serves, every collection of this location)."""
    engine = open_catalog_engine(datadir.catalog_url)
    location = open_location(datadir, Catalog(engine))
    try:
        assert isinstance(location, MilvusLocation)
        return location.record(), location.served_collection(), set(location._generations())
    finally:
        location.close()
        engine.dispose()


def assert_same_answers(faiss: VectorStore, other, k: int = 5) -> None:
    """Every stored image as a query: the same top-k ids, scores within 1e-4."""
    ids = np.sort(faiss.ids())
    queries = np.stack([faiss.reconstruct(int(i)) for i in ids])
    faiss_scores, faiss_ids = faiss.search(queries, k)
    other_scores, other_ids = other.search(queries, k)
    assert np.array_equal(other_ids, faiss_ids)
    assert np.abs(other_scores - faiss_scores).max() < 1e-4


def test_milvus_holds_the_whitened_vectors_of_the_faiss_file(tmp_path: Path, photos: Path, milvus_store: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    on_faiss, on_milvus = DataDir(tmp_path / "faiss"), DataDir(tmp_path / "milvus")
    faiss_report = index_json(photos, on_faiss)
    milvus_report = index_json(photos, on_milvus, "--vector-store", milvus_store)
    assert faiss_report["whitening"] is not None and milvus_report["whitening"] == faiss_report["whitening"]
    record, served, _ = generations_of(on_milvus)
    assert (record.collection, record.whitening) == (served, faiss_report["whitening"]) and record.generation >= 1
    with live_store(on_milvus) as (_, store):
        assert store.whitening.digest() == faiss_report["whitening"]
        assert_same_answers(VectorStore.load(on_faiss.vectors_path), store)

    # An incremental run upserts through the transform in force, into the served generation.
    add_pictures(photos, 1000, 4)
    assert index_json(photos, on_faiss)["whitening"] == faiss_report["whitening"]
    grown = index_json(photos, on_milvus)
    assert grown["indexed"] == 4 and grown["whitening"] == faiss_report["whitening"]
    after, served_after, _ = generations_of(on_milvus)
    assert (after.generation, served_after) == (record.generation, served) and after.saves > record.saves
    with live_store(on_milvus) as (_, store):
        assert_same_answers(VectorStore.load(on_faiss.vectors_path), store)

    # Doubled, the collection is refitted: a run builds the next generation, as FAISS refits its file.
    add_pictures(photos, 2000, PICTURES - 4)
    refit_on_faiss = index_json(photos, on_faiss)["whitening"]
    doubled = index_json(photos, on_milvus)
    refit, served_refit, _ = generations_of(on_milvus)
    assert doubled["whitening"] == refit.whitening == refit_on_faiss != faiss_report["whitening"]
    assert refit.generation > after.generation and served_refit == refit.collection != served
    with live_store(on_milvus) as (_, store):
        assert_same_answers(VectorStore.load(on_faiss.vectors_path), store)

    # compact builds the next generation; once their grace is over, older ones are dropped.
    monkeypatch.setattr(milvus_generations, "RETIRED_GRACE_S", 0.0)
    refitted = whysim_json("compact", "--data-dir", on_faiss.root)["whitening"]  # on today's vectors
    compacted = whysim_json("compact", "--data-dir", on_milvus.root, "--index-type", "hnsw")
    final, served_final, collections = generations_of(on_milvus)
    assert compacted["whitening"] == final.whitening == refitted
    assert compacted["index_type"] == "hnsw"
    assert final.generation > refit.generation and collections == {served_final} == {final.collection}
    with live_store(on_milvus) as (_, store):
        assert store.kind == "hnsw" and len(store) == 2 * PICTURES
        assert_same_answers(VectorStore.load(on_faiss.vectors_path), store)


def test_whitening_off_and_on_again_switch_generations(tmp_path: Path, photos: Path) -> None:
    datadir = DataDir(tmp_path / "data")
    fitted = index_json(photos, datadir, "--vector-store", f"milvus:{tmp_path / 'vectors.db'}")["whitening"]
    off = whysim_json("compact", "--data-dir", datadir.root, "--whitening", "off")
    record, served, _ = generations_of(datadir)
    assert off["whitening"] is None and record.whitening is None and record.collection == served
    with live_store(datadir) as (_, store):
        assert store.whitening is None and len(store) == PICTURES
    on = whysim_json("compact", "--data-dir", datadir.root, "--whitening", "auto")
    record, served, _ = generations_of(datadir)
    assert fitted is not None and on["whitening"] is not None and record.whitening == on["whitening"]


# ------------------------------------------------------------------ kill -9

REFIT_KILLS = 3


def compact_process(datadir: DataDir) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "from whysim.webui.cli import main; main()", "compact",
                             "--data-dir", str(datadir.root)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_for_lock(datadir: DataDir, process: subprocess.Popen) -> float:
    """Waits until `process` holds the data directory's writer lock; returns when it did."""
    lock = datadir.root / "writer.lock"
    deadline = time.monotonic() + 120
    while not (lock.exists() and lock.read_text() == str(process.pid)):
        assert process.poll() is None and time.monotonic() < deadline, "compact never took the lock"
        time.sleep(0.002)
    return time.monotonic()


@pytest.fixture(params=["lite", pytest.param("server", marks=MILVUS_SERVER)])
def served_reference(request: pytest.FixtureRequest, tmp_path: Path, photos: Path) -> tuple[DataDir, dict]:
    """On Milvus Lite, whose embedded server dies with the killed process, and on a Milvus
    server, which outlives its killed client with whatever that client had sent it."""
    datadir = DataDir(tmp_path / "data")
    if request.param == "server":
        store = request.getfixturevalue("milvus_server").vector_store("kill")
    else:
        store = f"milvus:{tmp_path / 'vectors.db'}"
    index_json(photos, datadir, "--vector-store", store)
    with live_store(datadir) as (_, live):
        reference = dict(zip(live.ids().tolist(), live.branch_vectors()))
    return datadir, reference  # a Lite file closed: only one process may open it


def assert_served_generation_is_whole(datadir: DataDir, reference: dict) -> None:
    """Every image, under the one whitening stored with them: each branch vector, whitened by it,
    finds its own image first."""
    with live_store(datadir) as (_, store):
        ids = store.ids()
        assert sorted(ids.tolist()) == sorted(reference) and store.whitening is not None
        branch = store.branch_vectors()
        expected = np.stack([reference[int(i)] for i in ids])
        assert np.abs(branch - expected).max() < 1e-3
        scores, found = store.search(store.whitening.apply(expected), 1)
        assert (found[:, 0] == ids).all() and scores.min() > 0.999


def test_kill_9_during_a_milvus_refit_leaves_a_whole_generation_served(served_reference) -> None:
    datadir, reference = served_reference
    process = compact_process(datadir)
    locked = wait_for_lock(datadir, process)
    assert process.wait(timeout=120) == 0
    refit_s = time.monotonic() - locked
    rng = random.Random(25)
    served = set()
    for _ in range(REFIT_KILLS):
        process = compact_process(datadir)
        wait_for_lock(datadir, process)
        time.sleep(rng.uniform(0, refit_s))
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        assert_served_generation_is_whole(datadir, reference)
        served.add(generations_of(datadir)[1])
    final = whysim_json("compact", "--data-dir", datadir.root)  # cleans up after the kills
    record, served_now, collections = generations_of(datadir)
    assert final["vectors"] == len(reference) and record.collection == served_now
    assert collections <= {served_now, *record.retired}, "a generation nobody served was left behind"
    assert_served_generation_is_whole(datadir, reference)
    print(f"refit {refit_s:.1f} s; served after the kills: {sorted(served)}")
