"""SearchEngine on a real index: exclusion of the query, paging, minimum score, stale rows, reloads."""
from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import encode, make_picture
from PIL import Image

from search_layer.collection import PICTURE_SIZE, run_index
from whysim.indexer.catalog.schema import ImageStatus
from whysim.indexer.datadir import DataDir
from whysim.indexer.vectors import VectorStore
from whysim.search.serving.engine import IndexNotReady, NotSearchable, SearchEngine, SearchQuery, UnknownImage

INDEXED = 11


def ids(page) -> list[int]:
    return [hit.id for hit in page.hits]


def test_search_by_id_leaves_out_the_query_and_ranks_by_score(engine, images) -> None:
    query = images["blobs/blobs_001.jpg"]
    page = engine.search_by_id(query.id, k=5)
    assert len(page.hits) == 5 and query.id not in ids(page)
    scores = [hit.score for hit in page.hits]
    assert scores == sorted(scores, reverse=True)
    assert all(hit.image.status == ImageStatus.INDEXED.value for hit in page.hits)
    stored = engine.snapshot().store
    query_vector = stored.reconstruct(query.id)
    for hit in page.hits:  # scores are the cosine similarities of the stored vectors
        assert hit.score == pytest.approx(float(query_vector @ stored.reconstruct(hit.id)), abs=1e-5)


def test_uploaded_copy_of_an_indexed_file_gets_its_stored_vector_and_is_left_out(engine, images, collection) -> None:
    target = images["stripes/stripes_002.jpg"]
    uploaded = engine.upload((collection / target.path).read_bytes())
    stored = engine.snapshot().store.reconstruct(target.id)
    assert float(uploaded.query.vector @ stored) > 0.9999  # decoded exactly like the indexer did
    page = engine.search(uploaded.query, k=INDEXED)
    assert target.id not in ids(page) and len(page.hits) == INDEXED - 1


def test_search_by_pixels_matches_search_by_lossless_bytes(engine) -> None:
    picture = make_picture(4242, PICTURE_SIZE)
    by_bytes = engine.search_by_image(encode(picture, "PNG"), k=4)
    by_pixels = engine.search_by_image(np.asarray(picture), k=4)
    assert ids(by_bytes) == ids(by_pixels)
    assert [h.score for h in by_bytes.hits] == pytest.approx([h.score for h in by_pixels.hits], abs=1e-5)


def test_duplicate_searches_with_its_originals_vector_and_leaves_both_out(engine, images) -> None:
    original, copy = images["blobs/blobs_000.jpg"], images["copies/blobs_000_copy.jpg"]
    assert copy.status == ImageStatus.DUPLICATE.value and copy.duplicate_of_id == original.id
    page = engine.search_by_id(copy.id, k=INDEXED)
    assert original.id not in ids(page) and copy.id not in ids(page)
    assert ids(page) == ids(engine.search_by_id(original.id, k=INDEXED))


def test_images_without_a_vector_or_row_are_refused(engine, images) -> None:
    with pytest.raises(NotSearchable, match="status failed"):
        engine.search_by_id(images["broken/truncated.jpg"].id)
    for unknown in (987654, 0, -3, 2**70):
        with pytest.raises(UnknownImage):
            engine.search_by_id(unknown)


def test_pages_concatenate_to_one_long_page(engine, images) -> None:
    query = images["stripes/stripes_000.jpg"].id
    whole = engine.search_by_id(query, k=INDEXED)
    assert whole.next_offset is None and len(whole.hits) == INDEXED - 1
    collected, offset = [], 0
    while offset is not None:
        page = engine.search_by_id(query, k=3, offset=offset)
        collected += ids(page)
        offset = page.next_offset
    assert collected == ids(whole)
    assert engine.search_by_id(query, k=3, offset=9).next_offset is None
    assert engine.search_by_id(query, k=3, offset=50).hits == []


def test_min_score_cuts_the_list_and_ends_paging(engine, images) -> None:
    query = images["blobs/blobs_002.jpg"].id
    scores = [hit.score for hit in engine.search_by_id(query, k=INDEXED).hits]
    cut = (scores[2] + scores[3]) / 2
    page = engine.search_by_id(query, k=2, min_score=cut)
    assert len(page.hits) == 2 and page.next_offset == 2
    last = engine.search_by_id(query, k=2, offset=2, min_score=cut)
    assert len(last.hits) == 1 and last.next_offset is None and last.hits[0].score >= cut
    assert engine.search_by_id(query, k=5, min_score=min(1.0, scores[0] + 1e-3)).hits == []


def test_hits_whose_row_is_gone_or_pending_are_dropped_not_errors(index_copy: DataDir, images) -> None:
    engine = SearchEngine.open(index_copy)
    try:
        query = images["blobs/blobs_003.jpg"].id
        before = ids(engine.search_by_id(query, k=4))
        engine.catalog.delete_images([before[0]])  # as a concurrent --prune would, vector still in the file
        engine.catalog.set_status([before[1]], ImageStatus.PENDING)
        after = engine.search_by_id(query, k=4)
        assert before[0] not in ids(after) and before[1] not in ids(after)
        assert len(after.hits) == 4  # the page is still filled from further neighbours
        assert ids(after)[:2] == before[2:]
    finally:
        engine.close()


def add_pictures(root: Path, seeds: range) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        (root / f"new_{seed}.jpg").write_bytes(encode(make_picture(seed, PICTURE_SIZE, "stripes")))


def test_engine_reloads_when_the_indexer_replaces_the_index(index_copy: DataDir, tmp_path: Path) -> None:
    engine = SearchEngine.open(index_copy)
    try:
        first = engine.snapshot()
        assert len(first.store) == INDEXED
        assert engine.snapshot() is first  # unchanged file: no reload
        extra = tmp_path / "more"
        add_pictures(extra, range(500, 503))
        run_index(extra, index_copy)
        second = engine.snapshot()
        assert second is not first and len(second.store) == INDEXED + 3
        new_ids = [info.id for info in engine.catalog.list_images(limit=1000) if info.path.startswith("new_")]
        assert len(new_ids) == 3
        page = engine.search_by_id(new_ids[0], k=INDEXED + 2)
        assert set(new_ids[1:]) <= set(ids(page))
    finally:
        engine.close()


def test_unreadable_index_keeps_the_previous_one_or_says_why(index_copy: DataDir) -> None:
    engine = SearchEngine.open(index_copy)
    try:
        served = engine.snapshot()
        garbage = index_copy.root / "garbage.tmp"
        garbage.write_bytes(b"not a faiss index")
        os.replace(garbage, index_copy.vectors_path)
        assert engine.snapshot().store is served.store
    finally:
        engine.close()
    fresh = SearchEngine.open(index_copy)
    try:
        with pytest.raises(IndexNotReady, match="cannot read the index"):
            fresh.snapshot()
    finally:
        fresh.close()


def test_empty_data_directory_is_not_ready(tmp_path: Path) -> None:
    engine = SearchEngine.open(DataDir(tmp_path / "empty"))
    try:
        with pytest.raises(IndexNotReady, match="whysim index"):
            engine.search(SearchQuery(np.ones(1280, dtype=np.float32)))
    finally:
        engine.close()


def test_searches_from_many_threads_while_the_index_is_replaced(index_copy: DataDir, images) -> None:
    engine = SearchEngine.open(index_copy)
    errors: list[BaseException] = []
    stop = threading.Event()
    query = images["blobs/blobs_004.jpg"].id

    def keep_searching() -> None:
        try:
            while not stop.is_set():
                page = engine.search_by_id(query, k=5)
                assert len(page.hits) == 5 and query not in ids(page)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=keep_searching) for _ in range(4)]
    try:
        for thread in threads:
            thread.start()
        store = VectorStore.load(index_copy.vectors_path)
        rng = np.random.default_rng(0)
        for round_ in range(6):  # vectors without catalog rows, as a crashed indexer could leave
            noise = rng.normal(size=(20, store.dim)).astype(np.float32)
            first_id = 10_000 + 20 * round_
            store.add(np.arange(first_id, first_id + 20), noise / np.linalg.norm(noise, axis=1)[:, None])
            store.save(index_copy.vectors_path)
            engine.snapshot()
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        engine.close()
    assert not errors, errors[0]
    assert engine.watcher.reloads >= 2


def test_grayscale_pixels_are_accepted(engine) -> None:
    gray = Image.fromarray(np.full((40, 50), 128, dtype=np.uint8))
    assert len(engine.search_by_image(gray, k=3).hits) == 3
