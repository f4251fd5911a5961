"""The indexing run end to end (real model, SQLite and FAISS): incremental work, changes, prune,
duplicates, unusable files and interruption."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ALL_STORAGE, FAISS_STORAGE, encode, make_picture
from odd_images import png_header_only, with_orientation
from PIL import Image
from whysim_cli import index_json, snapshot

from whysim.indexer.catalog.database import open_catalog_engine
from whysim.indexer.catalog.repository import Catalog
from whysim.indexer.imaging import DEFAULT_MAX_PIXELS
from whysim.indexer.model.loading import ModelRequest, build_branch, load_for_card
from whysim.indexer.pipeline.embedding import Embedder
from whysim.indexer.pipeline.reading import ReadRequest, read_image_file
from whysim.indexer.pipeline.runner import IndexingInterrupted, IndexOptions, IndexRun


def rewrite(path: Path, data: bytes) -> None:
    """Replaces a file's bytes and moves its mtime on, as an editor saving it later would."""
    before = path.stat().st_mtime_ns
    path.write_bytes(data)
    os.utime(path, ns=(before + 10**9, before + 10**9))


def cosine(a: np.ndarray | None, b: np.ndarray | None) -> float:
    assert a is not None and b is not None
    return float(np.dot(a, b))


def test_new_and_touched_files_on_rerun(make_collection, datadir) -> None:
    root = make_collection()
    index_json(root, datadir)
    (root / "blobs" / "extra.jpg").write_bytes(encode(make_picture(99)))
    touched = root / "stripes" / "stripes_000.jpg"
    rewrite(touched, touched.read_bytes())  # same bytes, new mtime: no need to embed again

    report = index_json(root, datadir)

    assert (report["indexed"], report["unchanged"], report["vectors"]) == (1, 8, 9)
    state = snapshot(datadir)
    state.assert_consistent()
    assert state.images["stripes/stripes_000.jpg"].mtime_ns == touched.stat().st_mtime_ns


def test_changed_file_gets_a_new_vector_and_the_others_keep_theirs(make_collection, datadir) -> None:
    root = make_collection()
    index_json(root, datadir)
    before = snapshot(datadir)
    changed = "blobs/blobs_001.jpg"
    rewrite(root / changed, encode(make_picture(1234, kind="stripes")))

    report = index_json(root, datadir)

    assert (report["indexed"], report["unchanged"], report["vectors"]) == (1, 7, 8)
    after = snapshot(datadir)
    after.assert_consistent()
    assert after.images[changed].id == before.images[changed].id
    assert after.images[changed].sha256 != before.images[changed].sha256
    assert cosine(after.vector(changed), before.vector(changed)) < 0.99
    for path in before.images.keys() - {changed}:
        np.testing.assert_array_equal(after.vector(path), before.vector(path))


def test_missing_files_are_reported_then_pruned(make_collection, datadir) -> None:
    root = make_collection()
    index_json(root, datadir)
    gone = ["blobs/blobs_000.jpg", "stripes/stripes_003.jpg"]
    gone_ids = {snapshot(datadir).images[path].id for path in gone}
    for path in gone:
        (root / path).unlink()

    kept = index_json(root, datadir)
    assert (kept["missing"], kept["removed"], kept["vectors"]) == (2, 0, 8)

    pruned = index_json(root, datadir, "--prune")
    assert (pruned["missing"], pruned["removed"], pruned["vectors"], pruned["indexed"]) == (0, 2, 6, 0)
    state = snapshot(datadir)
    state.assert_consistent()
    assert not set(gone) & state.images.keys()
    assert not gone_ids & set(state.store.ids().tolist())


def test_duplicates_share_one_vector_and_a_copy_is_promoted_when_the_original_goes(make_collection, datadir) -> None:
    root = make_collection({"blobs": 3})
    shutil.copyfile(root / "blobs" / "blobs_001.jpg", root / "copy_b.jpg")
    (root / "z").mkdir()
    shutil.copyfile(root / "blobs" / "blobs_001.jpg", root / "z" / "copy_c.jpg")

    report = index_json(root, datadir)

    assert (report["indexed"], report["duplicates"], report["vectors"]) == (3, 2, 3)
    state = snapshot(datadir)
    state.assert_consistent()
    original = state.images["blobs/blobs_001.jpg"]
    assert original.status == "indexed"
    for copy in ("copy_b.jpg", "z/copy_c.jpg"):
        assert state.images[copy].status == "duplicate" and state.images[copy].duplicate_of_id == original.id
    vector = state.vector("blobs/blobs_001.jpg")

    (root / "blobs" / "blobs_001.jpg").unlink()
    report = index_json(root, datadir, "--prune")

    assert (report["removed"], report["indexed"], report["duplicates"], report["vectors"]) == (1, 1, 1, 3)
    state = snapshot(datadir)
    state.assert_consistent()
    promoted = state.images["copy_b.jpg"]
    assert promoted.status == "indexed"
    assert state.images["z/copy_c.jpg"].duplicate_of_id == promoted.id
    np.testing.assert_allclose(state.vector("copy_b.jpg"), vector, atol=1e-6)


def test_unusable_files_fail_with_a_reason_and_odd_formats_are_indexed(tmp_path: Path, datadir) -> None:
    root = tmp_path / "odd"
    root.mkdir()
    upright = make_picture(7, (96, 64))
    ramp = np.tile(np.linspace(0, 65535, 80), (60, 1)).astype(np.uint16)
    palette = make_picture(8).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    files = {
        "truncated.jpg": encode(make_picture(9, (300, 200)))[:1200],
        "not_an_image.jpg": b"<html>404 not found</html>",
        "empty.png": b"",
        "bomb.png": png_header_only(40_000, 40_000),
        "cmyk.jpg": encode(make_picture(10).convert("CMYK"), "JPEG", quality=95),
        "rgb_of_cmyk.png": encode(make_picture(10), "PNG"),
        "deep16.png": encode(Image.fromarray(ramp), "PNG"),
        "palette.gif": encode(palette, "GIF"),
        "upright.jpg": encode(upright, "JPEG", quality=95),
        "rotated_exif.jpg": with_orientation(upright.transpose(Image.Transpose.ROTATE_90), 6),
        "sideways.jpg": encode(upright.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=95),
    }
    for name, data in files.items():
        (root / name).write_bytes(data)

    report = index_json(root, datadir)

    assert (report["indexed"], report["failed"], report["duplicates"]) == (7, 4, 0)
    state = snapshot(datadir)
    state.assert_consistent()
    reasons = {path: state.images[path].error for path in state.by_status("failed")}
    assert "truncated" in reasons["truncated.jpg"]
    assert reasons["not_an_image.jpg"] == "not a recognised image format"
    assert reasons["empty.png"] == "empty file"
    assert "decompression bomb" in reasons["bomb.png"]
    sizes = {path: (state.images[path].width, state.images[path].height) for path in state.by_status("indexed")}
    assert sizes["rotated_exif.jpg"] == sizes["upright.jpg"] == (96, 64)
    assert sizes["sideways.jpg"] == (64, 96) and sizes["deep16.png"] == (80, 60)
    assert sizes["cmyk.jpg"] == (96, 72) and sizes["palette.gif"] == (96, 72)
    assert cosine(state.vector("rotated_exif.jpg"), state.vector("upright.jpg")) > 0.99
    assert cosine(state.vector("sideways.jpg"), state.vector("upright.jpg")) < 0.97
    assert cosine(state.vector("cmyk.jpg"), state.vector("rgb_of_cmyk.png")) > 0.99


def test_a_failed_file_is_retried_once_it_is_fixed(tmp_path: Path, datadir) -> None:
    root = tmp_path / "photos"
    root.mkdir()
    (root / "a.jpg").write_bytes(encode(make_picture(1)))
    broken = root / "b.jpg"
    broken.write_bytes(b"")
    assert index_json(root, datadir)["failed"] == 1
    assert index_json(root, datadir)["failed"] == 0  # unchanged failures are not retried

    rewrite(broken, encode(make_picture(2)))
    report = index_json(root, datadir)

    assert (report["indexed"], report["vectors"]) == (1, 2)
    snapshot(datadir).assert_consistent()


@pytest.mark.parametrize("storage", ALL_STORAGE, indirect=True)
def test_interruption_keeps_what_was_saved_and_a_rerun_finishes(make_collection, datadir, vector_store) -> None:
    root = make_collection({"blobs": 6, "stripes": 6})
    branch = build_branch(ModelRequest(input_size=64))
    options = IndexOptions(batch_size=2, chunk_size=4, workers=0, progress=False, vector_store=vector_store)
    seen = []

    def press_ctrl_c(done: int) -> None:
        seen.append(done)
        if len(seen) == 3:
            raise KeyboardInterrupt

    with pytest.raises(IndexingInterrupted) as stopped:
        IndexRun(root, datadir, options, branch, on_progress=press_ctrl_c).run()

    assert stopped.value.report.indexed == 6  # the two flushed batches and the one in hand
    state = snapshot(datadir)
    state.assert_consistent()
    assert (len(state.by_status("indexed")), len(state.by_status("pending"))) == (6, 6)

    report = IndexRun(root, datadir, options, None).run()

    assert (report.indexed, report.unchanged, report.vectors) == (6, 6, 12)
    snapshot(datadir).assert_consistent()


@pytest.mark.parametrize("storage", FAISS_STORAGE, indirect=True)
def test_an_unreadable_index_file_is_rebuilt_from_the_images(make_collection, datadir) -> None:
    root = make_collection()
    index_json(root, datadir)
    datadir.vectors_path.write_bytes(b"not a faiss index")
    stale = datadir.root / f".{datadir.vectors_path.name}.4242.tmp"  # from a save that was killed
    stale.write_bytes(b"half an index")

    report = index_json(root, datadir)

    assert (report["indexed"], report["repaired"], report["vectors"]) == (8, 8, 8)
    snapshot(datadir).assert_consistent()
    assert not stale.exists()


def test_a_crash_while_switching_models_never_mixes_their_vectors(make_collection, datadir, vector_store,
                                                                  monkeypatch) -> None:
    root = make_collection({"blobs": 3})
    options = IndexOptions(workers=0, progress=False, vector_store=vector_store)
    IndexRun(root, datadir, options, build_branch(ModelRequest(input_size=64))).run()

    def crash(_catalog: Catalog) -> None:
        raise SystemExit("killed while re-queueing the rows")

    with monkeypatch.context() as patch:
        patch.setattr(Catalog, "reset_all_to_pending", crash)
        with pytest.raises(SystemExit):
            IndexRun(root, datadir, IndexOptions(workers=0, progress=False, rebuild=True),
                     build_branch(ModelRequest(input_size=64, pooling="max"))).run()
    IndexRun(root, datadir, options, None).run()  # rerun with whatever model the index now has

    state = snapshot(datadir)
    state.assert_consistent()
    engine = open_catalog_engine(datadir.catalog_url)
    card = Catalog(engine).active_model()
    engine.dispose()
    embedder = Embedder(load_for_card(card, datadir.models_dir), torch.device("cpu"))
    for path, info in state.images.items():
        pixels = read_image_file(ReadRequest(info.id, root / path), card.input_size, DEFAULT_MAX_PIXELS).pixels
        assert cosine(embedder(pixels[None])[0], state.vector(path)) > 0.9999, f"{path} embedded by another model"
