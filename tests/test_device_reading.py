"""The device decoder's preprocessing, run on CPU, against the PIL reader it must agree with."""
from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from tests.conftest import encode, make_picture
from whysim.indexer.jpeg_probe import probe_jpeg
from whysim.indexer.model.loading import ModelRequest, build_branch
from whysim.indexer.pipeline.device_reading import DeviceBatchReader, load_file
from whysim.indexer.pipeline.embedding import Embedder
from whysim.indexer.pipeline.reading import ReadRequest, ReadResult, read_image_file
from whysim.indexer.vectors import VectorStore
from whysim.webui.cli import cli

SIZE = 64
MAX_PIXELS = 10_000_000


def with_orientation(image: Image.Image, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(image, "JPEG", exif=exif.tobytes())


def device_jpegs() -> dict[str, bytes]:
    """JPEGs the device decoder takes: sizes below/above the input, grey, progressive, rotated."""
    files = {
        "small.jpg": encode(make_picture(1, (40, 30))),
        "wide.jpg": encode(make_picture(2, (320, 120), kind="stripes")),
        "large.jpg": encode(make_picture(3, (1200, 900))),
        "grey.jpg": encode(make_picture(4, (150, 100)).convert("L")),
        "progressive.jpg": encode(make_picture(5, (200, 160)), progressive=True),
        "padded.jpg": encode(make_picture(6, (90, 70))) + b"\x00" * 10,
    }
    for orientation in (2, 3, 5, 6, 7, 8):
        files[f"exif{orientation}.jpg"] = with_orientation(make_picture(10 + orientation, (120, 80)), orientation)
    return files


def pil_only_files() -> dict[str, bytes]:
    """Files the device decoder must hand to PIL: other formats, CMYK, broken."""
    jpeg = encode(make_picture(30, (100, 80)))
    return {
        "photo.png": encode(make_picture(31, (100, 80)), "PNG"),
        "alpha.png": encode(make_picture(32, (60, 60)).convert("RGBA"), "PNG"),
        "cmyk.jpg": encode(make_picture(33, (100, 80)).convert("CMYK")),
        "truncated.jpg": jpeg[: len(jpeg) // 2],
        "empty.jpg": b"",
        "text.jpg": b"not an image at all",
        "huge.jpg": encode(Image.new("RGB", (4000, 3000), (10, 20, 30))),  # over MAX_PIXELS
    }


@pytest.fixture
def mixed_files(tmp_path: Path) -> list[ReadRequest]:
    root = tmp_path / "mixed"
    root.mkdir()
    requests = []
    for number, (name, data) in enumerate({**device_jpegs(), **pil_only_files()}.items()):
        (root / name).write_bytes(data)
        requests.append(ReadRequest(number + 1, root / name))
    requests.append(ReadRequest(999, root / "vanished.jpg"))
    return requests


def test_probe_reads_jpeg_headers() -> None:
    header = probe_jpeg(with_orientation(make_picture(1, (120, 80)), 6))
    assert header is not None and (header.width, header.height, header.orientation) == (120, 80, 6)
    assert header.displayed_size == (80, 120)
    grey = probe_jpeg(encode(make_picture(2, (50, 40)).convert("L")))
    assert grey is not None and grey.components == 1 and grey.orientation == 1
    for name, data in pil_only_files().items():
        if name != "huge.jpg":  # a valid JPEG: the pixel limit is applied by the reader
            assert probe_jpeg(data) is None, name


def read_both(requests: list[ReadRequest]) -> tuple[list[ReadResult], list[ReadResult], torch.Tensor]:
    """The PIL reader's results, and the device reader's (one batch, pixels in row order)."""
    pil = [read_image_file(request, SIZE, MAX_PIXELS) for request in requests]
    reader = DeviceBatchReader(requests, SIZE, len(requests), torch.device("cpu"), MAX_PIXELS, threads=2)
    (batch,) = list(reader)
    assert batch.pixels is not None
    return pil, batch.results, batch.pixels


def test_device_reader_records_what_the_pil_reader_records(mixed_files: list[ReadRequest]) -> None:
    pil, device, _ = read_both(mixed_files)
    assert [r.image_id for r in device] == [r.image_id for r in pil]
    for expected, got in zip(pil, device):
        assert (got.sha256, got.width, got.height, got.error) == \
               (expected.sha256, expected.width, expected.height, expected.error), got.image_id
    errors = {r.image_id: r.error for r in device if r.error}
    assert len(errors) == 5  # truncated, empty, text, huge, vanished; PNGs and CMYK decode


def test_fallback_files_go_through_pil(mixed_files: list[ReadRequest]) -> None:
    by_name = {request.path.name: request for request in mixed_files}
    for name in ("photo.png", "alpha.png", "cmyk.jpg", "truncated.jpg", "huge.jpg"):
        assert load_file(by_name[name], SIZE, MAX_PIXELS).data is None, name
    assert load_file(by_name["large.jpg"], SIZE, MAX_PIXELS).data is not None


def test_device_pixels_match_pil_pixels(mixed_files: list[ReadRequest]) -> None:
    pil, device, pixels = read_both(mixed_files)
    expected = torch.stack([r.pixels for r in pil if r.pixels is not None]).to(torch.int16)
    difference = (pixels.to(torch.int16) - expected).abs().float()
    per_image = difference.mean(dim=(1, 2, 3))
    names = [request.path.name for request, r in zip(mixed_files, pil) if r.pixels is not None]
    # Same libjpeg, same filter: within rounding, except where PIL decodes a large JPEG at
    # reduced scale (draft) and the device decodes it fully before an antialiased resize.
    for name, error in zip(names, per_image.tolist()):
        assert error < (4.0 if name == "large.jpg" else 1.0), name


def test_device_embeddings_match_pil_embeddings(mixed_files: list[ReadRequest]) -> None:
    pil, _, pixels = read_both(mixed_files)
    embed = Embedder(build_branch(ModelRequest(input_size=SIZE)), torch.device("cpu"))
    expected = embed(torch.stack([r.pixels for r in pil if r.pixels is not None]))
    cosine = (embed(pixels) * expected).sum(axis=1)
    assert cosine.min() >= 0.99, cosine


def test_batches_cover_every_request_in_order(mixed_files: list[ReadRequest]) -> None:
    reader = DeviceBatchReader(mixed_files, SIZE, 4, torch.device("cpu"), MAX_PIXELS, threads=3)
    batches = list(reader)
    assert len(batches) == len(reader) == -(-len(mixed_files) // 4)
    assert [r.image_id for b in batches for r in b.results] == [r.image_id for r in mixed_files]
    for batch in batches:
        ok = sum(r.error is None for r in batch.results)
        assert (batch.pixels is None and ok == 0) or batch.pixels.shape == (ok, 3, SIZE, SIZE)


def test_index_with_device_decoder_matches_pil_decoder(tmp_path: Path) -> None:
    root = tmp_path / "photos"
    (root / "a").mkdir(parents=True)
    for name, data in {**device_jpegs(), "photo.png": pil_only_files()["photo.png"],
                       "broken.jpg": b"\xff\xd8 broken"}.items():
        (root / "a" / name).write_bytes(data)
    reports = {}
    for decoder in ("pil", "device"):
        result = CliRunner().invoke(cli, ["index", str(root), "--data-dir", str(tmp_path / decoder), "--json",
                                          "--decoder", decoder, "--input-size", str(SIZE), "--workers", "0",
                                          "--batch-size", "5", "--no-progress"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        reports[decoder] = json.loads(result.stdout)
    for key in ("indexed", "failed", "vectors"):
        assert reports["device"][key] == reports["pil"][key]
    assert reports["device"]["failed"] == 1
    pil_store = VectorStore.load(tmp_path / "pil" / "vectors.faiss")
    device_store = VectorStore.load(tmp_path / "device" / "vectors.faiss")
    # Both directories number the same files identically (same scan order).
    for image_id in pil_store.ids():
        assert float(pil_store.reconstruct(image_id) @ device_store.reconstruct(image_id)) >= 0.99


def test_stopping_early_ends_the_reader_threads(mixed_files: list[ReadRequest]) -> None:
    reader = DeviceBatchReader(mixed_files * 4, SIZE, 2, torch.device("cpu"), MAX_PIXELS, threads=2)
    batches = iter(reader)
    next(batches)
    batches.close()  # what a `for` loop does when its body raises (Ctrl-C, a failed write)
    assert not [t for t in threading.enumerate() if t.name.startswith(("whysim-read", "whysim-decode"))]


def test_probe_tells_progressive_jpegs_apart() -> None:
    picture = make_picture(7, (64, 48))
    assert probe_jpeg(encode(picture, progressive=True)).progressive  # type: ignore[union-attr]
    assert not probe_jpeg(encode(picture)).progressive  # type: ignore[union-attr]
