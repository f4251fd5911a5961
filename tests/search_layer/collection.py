"""Generated collections and the real `whysim index` run that the search tests share."""
from __future__ import annotations

import shutil
from pathlib import Path

from click.testing import CliRunner
from conftest import encode, make_picture
from PIL import Image

from whysim.indexer.datadir import DataDir
from whysim.webui.cli import cli

SMALL_MODEL = ["--input-size", "64", "--workers", "0", "--no-progress"]
PICTURE_SIZE = (96, 72)


def rotated_jpeg(seed: int) -> bytes:
    """A 96x72 JPEG whose EXIF says 'rotate 90°': displayed as 72x96."""
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(make_picture(seed, PICTURE_SIZE), exif=exif.tobytes())


def build_collection(root: Path) -> Path:
    for label, kind in (("blobs", "blobs"), ("stripes", "stripes")):
        (root / label).mkdir(parents=True)
        for index in range(5):
            seed = 100 + index + (50 if kind == "stripes" else 0)
            (root / label / f"{label}_{index:03d}.jpg").write_bytes(encode(make_picture(seed, PICTURE_SIZE, kind)))
    (root / "copies").mkdir()
    shutil.copyfile(root / "blobs" / "blobs_000.jpg", root / "copies" / "blobs_000_copy.jpg")
    (root / "broken").mkdir()
    whole = encode(make_picture(7, PICTURE_SIZE))
    (root / "broken" / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    (root / "rotated").mkdir()
    (root / "rotated" / "rotated.jpg").write_bytes(rotated_jpeg(9))
    return root


def catalog_option(datadir: DataDir) -> list[str]:
    """`--catalog-url URL` when the data directory's catalog is not its own SQLite file."""
    return ["--catalog-url", datadir.catalog_url_override] if datadir.catalog_url_override else []


def location(datadir: DataDir) -> list[str]:
    """The command-line options naming this data directory and its catalog."""
    return ["--data-dir", str(datadir.root), *catalog_option(datadir)]


def run_index(root: Path, datadir: DataDir) -> None:
    result = CliRunner().invoke(cli, ["index", str(root), *location(datadir), *SMALL_MODEL],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
