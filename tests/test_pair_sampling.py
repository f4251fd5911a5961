"""Pairs drawn from a class-per-folder collection."""
from __future__ import annotations

from pathlib import Path

import pytest

from whysim.search.evaluation.pair_sampling import draw_pairs, labelled_files


def groups_of(sizes: dict[str, int]) -> dict[str, list[Path]]:
    return {label: [Path(f"{label}/{i}.jpg") for i in range(count)] for label, count in sizes.items()}


def test_pairs_alternate_same_and_different_class_and_never_repeat_a_file() -> None:
    pairs = draw_pairs(groups_of({"a": 5, "b": 1, "c": 4}), 40, seed=7)
    assert len(pairs) == 40
    assert [p.same_class for p in pairs] == [i % 2 == 0 for i in range(40)]
    for pair in pairs:
        assert pair.query != pair.hit
        assert pair.query.parent.name == pair.query_label and pair.hit.parent.name == pair.hit_label
        if pair.same_class:
            assert pair.query_label != "b"  # a class with one image cannot give a same-class pair


def test_the_seed_reproduces_the_pairs() -> None:
    groups = groups_of({"a": 6, "b": 6})
    assert draw_pairs(groups, 10, seed=3) == draw_pairs(groups, 10, seed=3)
    assert draw_pairs(groups, 10, seed=3) != draw_pairs(groups, 10, seed=4)


@pytest.mark.parametrize(("sizes", "message"), [
    ({"a": 5}, "at least two class folders"),
    ({"a": 1, "b": 1}, "at least two images"),
])
def test_collections_that_cannot_give_both_kinds_of_pair_are_refused(sizes, message) -> None:
    with pytest.raises(ValueError, match=message):
        draw_pairs(groups_of(sizes), 4, seed=0)


def test_labelled_files_groups_by_parent_folder(make_collection) -> None:
    root = make_collection({"blobs": 2, "stripes": 3})
    (root / "loose.jpg").write_bytes((root / "blobs" / "blobs_000.jpg").read_bytes())
    groups = labelled_files(root)
    assert {label: len(paths) for label, paths in groups.items()} == {"blobs": 2, "stripes": 3}
    assert all(path.is_file() for paths in groups.values() for path in paths)
