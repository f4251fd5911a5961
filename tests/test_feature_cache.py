"""Cached backbone features: equal to the indexer's, reused across runs, safe after a crash."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from whysim.indexer.model.loading import ModelRequest, build_branch
from whysim.indexer.pipeline.reading import ReadRequest, read_image_file
from whysim.indexer.training.collection import scan_labelled
from whysim.indexer.training.features_cache import MAPS_FILE, FeatureCache, cache_key, fill_cache
from whysim.indexer.training.trainable import TrainableBranch


def test_cache_matches_indexer_features_and_is_reused(make_collection, tmp_path: Path) -> None:
    root = make_collection({"blobs": 3, "stripes": 3})
    (root / "blobs" / "broken.jpg").write_bytes(b"not an image")
    collection = scan_labelled(root, progress=False)
    model = TrainableBranch(build_branch(ModelRequest(input_size=64)), trainable_stages=1)
    key = cache_key("lite0", model.trunk, model.cut, 64, ("orig", "flip"))
    cache = FeatureCache(tmp_path / "cache" / key.folder_name())
    files = [(image.sha256, root / image.path) for image in collection.images]
    failed = fill_cache(cache, files, model.trunk_maps, 64, ("orig", "flip"), batch_size=4, workers=0,
                        progress=False)
    assert list(failed.values()) == ["not a recognised image format"]
    assert len(cache.row_of) == 6
    maps = cache.reader()
    assert maps.shape[:2] == (6, 2) and maps.shape[2] == 320  # Lite0 minus its last module: 320 channels

    image = collection.images[1]
    pixels = read_image_file(ReadRequest(0, root / image.path), 64, 10**8).pixels[None]
    expected = model.trunk_maps(pixels)[0].numpy()
    np.testing.assert_allclose(maps[cache.row_of[image.sha256], 0], expected, rtol=1e-2, atol=1e-2)
    flipped = model.trunk_maps(pixels.flip(-1))[0].numpy()
    np.testing.assert_allclose(maps[cache.row_of[image.sha256], 1], flipped, rtol=1e-2, atol=1e-2)

    # a crash after writing data but before naming it: the leftover bytes are overwritten
    with open(cache.directory / MAPS_FILE, "ab") as handle:
        handle.write(b"\x00" * 1000)
    reopened = FeatureCache(cache.directory)
    calls = []
    assert fill_cache(reopened, files, lambda p: calls.append(p) or model.trunk_maps(p), 64, ("orig", "flip"),
                      4, 0, False) == failed
    assert not calls  # everything readable was cached already; only the broken file was retried
    extra = make_collection({"new": 1}, name="more")
    new_file = next(extra.rglob("*.jpg"))
    fill_cache(reopened, [("new-sha", new_file)], model.trunk_maps, 64, ("orig", "flip"), 4, 0, False)
    assert reopened.row_of["new-sha"] == 6
    assert (cache.directory / MAPS_FILE).stat().st_size == 7 * reopened.row_bytes
    np.testing.assert_array_equal(FeatureCache(cache.directory).reader()[1], maps[1])


def test_cached_embedding_equals_branch_embedding(make_collection) -> None:
    root = make_collection({"blobs": 2})
    branch = build_branch(ModelRequest(input_size=64, head_dim=16))
    model = TrainableBranch(branch, trainable_stages=2)
    pixels = torch.stack([read_image_file(ReadRequest(0, p), 64, 10**8).pixels for p in sorted(root.rglob("*.jpg"))])
    with torch.no_grad():
        via_cut = model.embed_maps(model.trunk_maps(pixels))
        direct = branch(pixels)
    torch.testing.assert_close(via_cut, direct, rtol=1e-4, atol=1e-5)
