"""The collection-fitted whitening: the transform itself, its storage inside the index file, and
its life through `whysim index` (fit, incremental runs, growth), `compact` and restarts."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import encode, make_picture

from whysim.indexer.datadir import DataDir
from whysim.indexer.index_kinds import INDEX_KINDS
from whysim.indexer.model.whitening import MIN_VECTORS, fit_whitening
from whysim.indexer.vectors import VectorStore
from whysim.webui.cli import cli

SMALL = ["--input-size", "64", "--workers", "0", "--no-progress"]


def unit_rows(count: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    matrix = rng.normal(size=(count, dim)) * np.linspace(4.0, 0.2, dim)  # an uneven spectrum
    matrix += rng.normal(size=dim)  # and a common direction, as real embeddings have
    return (matrix / np.linalg.norm(matrix, axis=1, keepdims=True)).astype(np.float32)


def run(*args: object) -> dict:
    result = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def add_pictures(root: Path, start: int, count: int) -> None:
    """`count` photos in pairs of two views of one scene (two sizes and qualities of one picture):
    an instance-level collection, the kind whysim whitens."""
    for number in range(start, start + count):
        seed, view = number // 2, number % 2
        kind = "stripes" if seed % 2 else "blobs"
        folder = root / kind
        folder.mkdir(parents=True, exist_ok=True)
        picture = make_picture(seed, size=(96 + 4 * view, 72), kind=kind)
        (folder / f"{kind}_{number:04d}.jpg").write_bytes(encode(picture, quality=90))


# ---------------------------------------------------------------- the transform


def test_whitened_vectors_are_unit_and_map_back_to_the_branch_vectors() -> None:
    vectors = unit_rows(300, 32)
    whitening = fit_whitening(vectors)
    whitened = whitening.apply(vectors)
    assert np.allclose(np.linalg.norm(whitened, axis=1), 1.0, atol=1e-5)
    assert np.abs(whitening.invert(whitened) - vectors).max() < 1e-4
    torch_whitened = whitening.torch_apply(torch.from_numpy(vectors).double()).numpy()
    assert np.abs(torch_whitened - whitened).max() < 1e-5
    # It changes the geometry: the dominant direction no longer dominates the similarities.
    assert np.abs(whitened.mean(axis=0)).max() < np.abs(vectors.mean(axis=0)).max()


def test_fitting_needs_two_vectors_and_is_deterministic() -> None:
    with pytest.raises(ValueError):
        fit_whitening(unit_rows(1, 8))
    vectors = unit_rows(80, 16)
    assert fit_whitening(vectors).digest() == fit_whitening(vectors.copy()).digest()
    assert fit_whitening(vectors).digest() != fit_whitening(unit_rows(80, 16, seed=1)).digest()


@pytest.mark.parametrize("kind", INDEX_KINDS)
def test_the_index_file_carries_its_whitening(tmp_path: Path, kind: str) -> None:
    vectors = unit_rows(400, 32)
    whitening = fit_whitening(vectors)
    store = VectorStore.build(np.arange(1, 401), whitening.apply(vectors), kind)
    store.whitening = whitening
    path = tmp_path / "vectors.faiss"
    store.save(path)
    for mmap in (False, True):
        loaded = VectorStore.load(path, mmap=mmap)
        assert loaded.kind == kind and len(loaded) == 400
        assert loaded.whitening is not None and loaded.whitening.digest() == whitening.digest()
        tolerance = 1e-2 if kind == "ivfpq" else 1e-4  # ivfpq keeps a float16 copy
        assert np.abs(loaded.branch_vectors() - vectors).max() < tolerance
    raw = VectorStore.load(path).rewhitened(None)
    assert raw.whitening is None and np.abs(raw.vectors() - vectors).max() < (1e-2 if kind == "ivfpq" else 1e-4)


# ------------------------------------------------------- through whysim index


def test_index_fits_whitening_keeps_it_and_refits_when_the_collection_doubles(tmp_path: Path) -> None:
    root, datadir = tmp_path / "photos", DataDir(tmp_path / "data")
    add_pictures(root, 0, MIN_VECTORS - 10)
    first = run("index", root, "--data-dir", datadir.root, "--json", *SMALL)
    assert first["whitening"] is None  # too few images to estimate a covariance

    add_pictures(root, 1000, 20)
    fitted = run("index", root, "--data-dir", datadir.root, "--json", "--no-progress")
    assert fitted["indexed"] == 20 and fitted["whitening"] is not None
    store = VectorStore.load(datadir.vectors_path)
    assert store.whitening is not None and store.whitening.digest() == fitted["whitening"]
    stats = run("stats", "--data-dir", datadir.root, "--json")
    assert stats["whitening"] == fitted["whitening"]

    # A small incremental run applies the stored transform to the new vectors and keeps it.
    add_pictures(root, 2000, 5)
    grown = run("index", root, "--data-dir", datadir.root, "--json", "--no-progress")
    assert grown["indexed"] == 5 and grown["whitening"] == fitted["whitening"]
    new_id = max(VectorStore.load(datadir.vectors_path).ids())
    hit = run("search", next((root / "blobs").glob("blobs_200*.jpg")), "--data-dir", datadir.root, "-k", "1", "--json")
    assert hit["hits"]  # the query's own bytes are excluded, the collection is searchable as a whole
    whitened_self = VectorStore.load(datadir.vectors_path).reconstruct(int(new_id))
    assert abs(float(np.linalg.norm(whitened_self)) - 1.0) < 1e-4

    # Twice the images it was fitted on: refitted, and every vector moved with it.
    add_pictures(root, 3000, 2 * (MIN_VECTORS + 10))
    doubled = run("index", root, "--data-dir", datadir.root, "--json", "--no-progress")
    assert doubled["whitening"] not in (None, fitted["whitening"])
    assert VectorStore.load(datadir.vectors_path).whitening.digest() == doubled["whitening"]


def test_whitened_index_vectors_are_the_branch_vectors_through_the_transform(tmp_path: Path) -> None:
    """What search ranks by is exactly Whitening.apply(branch vector): checked against a fresh embedding."""
    from whysim.indexer.model.loading import ModelRequest, build_branch
    from whysim.indexer.pipeline.embedding import Embedder
    from whysim.indexer.pipeline.reading import ReadRequest, read_image_file

    root, datadir = tmp_path / "photos", DataDir(tmp_path / "data")
    add_pictures(root, 0, MIN_VECTORS + 4)
    run("index", root, "--data-dir", datadir.root, "--json", *SMALL)
    store = VectorStore.load(datadir.vectors_path)
    assert store.whitening is not None
    embedder = Embedder(build_branch(ModelRequest(input_size=64)), torch.device("cpu"))
    path = next((root / "blobs").glob("*.jpg"))
    pixels = read_image_file(ReadRequest(0, path), 64, 10**9).pixels
    expected = store.whitening.apply(embedder(pixels[None]))[0]
    best = store.search(expected[None], 1)
    assert best[0][0, 0] > 0.9999  # the stored vector of that file is the transformed embedding


def test_a_collection_of_broad_categories_is_not_whitened(make_collection, datadir: DataDir) -> None:
    root = make_collection({"blobs": MIN_VECTORS // 2 + 5, "stripes": MIN_VECTORS // 2 + 5})
    assert run("index", root, "--data-dir", datadir.root, "--json", *SMALL)["whitening"] is None


def test_compact_refits_and_off_drops_the_whitening(tmp_path: Path) -> None:
    root, datadir = tmp_path / "photos", DataDir(tmp_path / "data")
    add_pictures(root, 0, MIN_VECTORS + 6)
    run("index", root, "--data-dir", datadir.root, "--json", *SMALL)
    before = VectorStore.load(datadir.vectors_path)
    ids = np.sort(before.ids())
    queries = np.stack([before.reconstruct(int(i)) for i in ids])
    top_before = before.search(queries, 2)[1]

    report = run("compact", "--data-dir", datadir.root, "--json")
    after = VectorStore.load(datadir.vectors_path)
    assert report["whitening"] == after.whitening.digest()
    assert np.abs(after.branch_vectors()[np.argsort(after.ids())] - before.branch_vectors()[np.argsort(before.ids())]).max() < 1e-3
    requeried = np.stack([after.reconstruct(int(i)) for i in ids])
    assert (after.search(requeried, 2)[1] == top_before).mean() > 0.95  # same collection, same answers

    off = run("compact", "--data-dir", datadir.root, "--whitening", "off", "--json")
    assert off["whitening"] is None and VectorStore.load(datadir.vectors_path).whitening is None
    # The choice is remembered by later runs of whysim index.
    add_pictures(root, 5000, 2)
    assert run("index", root, "--data-dir", datadir.root, "--json", "--no-progress")["whitening"] is None
    assert run("index", root, "--data-dir", datadir.root, "--json", "--no-progress",
               "--whitening", "auto")["whitening"] is not None
