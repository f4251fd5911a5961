"""Train/validation/test split: stratified, seeded, and no byte-identical file in two splits."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from conftest import encode, make_picture

from whysim.indexer.training.collection import LabelledCollection, LabelledImage, scan_labelled
from whysim.indexer.training.splits import SPLITS, Split, split_collection


def collection_of(counts: dict[str, int]) -> LabelledCollection:
    images = [LabelledImage(f"{label}/{i:03d}.jpg", label, f"{label}-{i}")
              for label, count in counts.items() for i in range(count)]
    return LabelledCollection(Path("/nowhere"), tuple(images))


def split_of(split: Split) -> dict[str, str]:
    return {path: name for name in SPLITS for path in split.of(name)}


def test_stratified_and_complete() -> None:
    collection = collection_of({"a": 100, "b": 40, "c": 20})
    split = split_collection(collection, validation=0.15, test=0.15, seed=3)
    where = split_of(split)
    assert sorted(where) == sorted(image.path for image in collection.images)  # each file exactly once
    per_class = Counter((path.split("/")[0], name) for path, name in where.items())
    for label, total in {"a": 100, "b": 40, "c": 20}.items():
        assert per_class[(label, "test")] == round(total * 0.15)
        assert per_class[(label, "validation")] == round(total * 0.15)
        assert per_class[(label, "train")] == total - 2 * round(total * 0.15)


def test_seeded() -> None:
    collection = collection_of({"a": 30, "b": 30})
    assert split_collection(collection, seed=1) == split_collection(collection, seed=1)
    assert split_collection(collection, seed=1).of("test") != split_collection(collection, seed=2).of("test")


def test_byte_identical_files_share_a_split(make_collection, tmp_path: Path) -> None:
    root = make_collection({"rose": 12, "tulip": 12, "daisy": 12})
    twin = encode(make_picture(999))
    copies = ["rose/copy_a.jpg", "rose/copy_b.jpg", "tulip/copy_c.jpg", "daisy/copy_d.jpg"]
    for path in copies:
        (root / path).write_bytes(twin)
    collection = scan_labelled(root, progress=False)
    for seed in range(12):
        where = split_of(split_collection(collection, 0.2, 0.2, seed))
        assert len({where[path] for path in copies}) == 1, seed
    # all copies form one group, so the test split cannot get 0 or 4 of them by chance alone
    homes = {split_of(split_collection(collection, 0.2, 0.2, seed))["rose/copy_a.jpg"] for seed in range(12)}
    assert len(homes) > 1


def test_split_file_round_trip(tmp_path: Path) -> None:
    split = split_collection(collection_of({"a": 10, "b": 10}), seed=5)
    split.save(tmp_path / "split.json")
    assert Split.load(tmp_path / "split.json") == split


def test_bad_fractions_and_bad_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="leave something to train on"):
        split_collection(collection_of({"a": 10, "b": 10}), validation=0.5, test=0.5)
    (tmp_path / "split.json").write_text("{}")
    with pytest.raises(ValueError, match="not a whysim split file"):
        Split.load(tmp_path / "split.json")


def test_distinct_collapses_copies_and_drops_ambiguous_ones() -> None:
    images = (LabelledImage("a/1.jpg", "a", "x"), LabelledImage("a/2.jpg", "a", "x"),
              LabelledImage("a/3.jpg", "a", "y"), LabelledImage("b/3.jpg", "b", "y"),
              LabelledImage("b/4.jpg", "b", "z"))
    distinct, removed = LabelledCollection(Path("/r"), images).distinct()
    assert [image.path for image in distinct.images] == ["a/1.jpg", "b/4.jpg"]
    assert removed == 3
