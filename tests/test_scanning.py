"""Scanning a collection: images only, hidden files skipped, never leaving the root through a symlink."""
from __future__ import annotations

import os
from pathlib import Path

from conftest import encode, make_picture

from whysim.indexer.scanning import scan_collection


def write_image(path: Path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode(make_picture(seed)))


def test_symlinks_are_followed_only_inside_the_root(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    write_image(root / "a" / "one.jpg", 1)
    write_image(outside / "secret.jpg", 2)
    write_image(outside / "folder" / "deep.jpg", 3)
    os.symlink(outside / "secret.jpg", root / "a" / "link_out.jpg")
    os.symlink(outside / "folder", root / "dir_out")
    os.symlink(root / "a" / "one.jpg", root / "link_in.jpg")
    os.symlink(root / "a", root / "alias")  # same folder twice: scanned once
    os.symlink(root, root / "a" / "loop")  # must not recurse forever

    found = [f.path for f in scan_collection(root)]

    assert "a/link_out.jpg" not in found and not any("dir_out" in p for p in found)
    assert sorted(found) == ["a/one.jpg", "link_in.jpg"]


def test_only_visible_image_files_with_labels_from_their_folder(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write_image(root / "cats" / "c.JPG", 1)
    write_image(root / "top.png", 2)
    write_image(root / ".cache" / "hidden.jpg", 3)
    write_image(root / "cats" / ".hidden.jpg", 4)
    (root / "cats" / "notes.txt").write_text("not an image")

    found = {f.path: f for f in scan_collection(root)}

    assert sorted(found) == ["cats/c.JPG", "top.png"]
    assert found["cats/c.JPG"].label == "cats" and found["top.png"].label is None
    assert found["top.png"].size == (root / "top.png").stat().st_size
