"""Decoding untrusted files: every refusal has a reason, every odd-but-valid image becomes RGB."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import encode, make_picture
from odd_images import png_header_only, with_orientation
from PIL import Image

from whysim.indexer.imaging import ImageRejected, decode_image, resize_square


@pytest.mark.parametrize(("data", "reason"), [
    (b"", "empty file"),
    (b"this is a text file, not a picture\n" * 20, "not a recognised image format"),
    (encode(make_picture(1, (400, 300)))[:1500], "truncated"),
    (png_header_only(30_000, 30_000), "decompression bomb"),
])
def test_unusable_files_are_rejected_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(ImageRejected, match=reason):
        decode_image(data)


def test_pixel_limit_refuses_before_decoding() -> None:
    with pytest.raises(ImageRejected, match="too many pixels: 400x300"):
        decode_image(encode(make_picture(2, (400, 300))), max_pixels=100_000)


def test_exif_orientation_is_honoured_in_pixels_and_size() -> None:
    upright = make_picture(3, (120, 80))
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # what a camera held sideways writes
    decoded = decode_image(with_orientation(stored, 6))
    assert (decoded.width, decoded.height) == (120, 80)
    assert decoded.image.size == (120, 80)
    difference = np.abs(np.asarray(decoded.image, np.int16) - np.asarray(upright, np.int16))
    assert difference.mean() < 6  # JPEG noise only; a wrong rotation would not even fit the shape


def test_draft_decoding_keeps_full_size_metadata_and_enough_pixels() -> None:
    decoded = decode_image(encode(make_picture(4, (1000, 600))), draft_size=64)
    assert (decoded.width, decoded.height) == (1000, 600)
    assert min(decoded.image.size) >= 64 and decoded.image.size[0] < 1000


def test_cmyk_jpeg_becomes_the_same_rgb_picture() -> None:
    picture = make_picture(5)
    decoded = decode_image(encode(picture.convert("CMYK"), "JPEG", quality=95))
    assert decoded.image.mode == "RGB"
    assert np.abs(np.asarray(decoded.image, np.int16) - np.asarray(picture, np.int16)).mean() < 6


def test_sixteen_bit_scan_is_stretched_not_clipped() -> None:
    ramp = np.tile(np.linspace(0, 4095, 64), (48, 1)).astype(np.uint16)  # a 12-bit scan in 16 bits
    decoded = decode_image(encode(Image.fromarray(ramp), "PNG"))
    pixels = np.asarray(decoded.image)
    assert decoded.image.mode == "RGB" and (decoded.width, decoded.height) == (64, 48)
    assert pixels.min() == 0 and pixels.max() == 255  # a clip to 8 bits would be all white


def test_palette_with_transparency_is_composited_on_white() -> None:
    palette = Image.new("P", (32, 32), 0)
    palette.putpalette([0, 0, 0, 200, 30, 30])
    palette.paste(1, (8, 8, 24, 24))
    decoded = np.asarray(decode_image(encode(palette, "PNG", transparency=0)).image)
    assert tuple(decoded[0, 0]) == (255, 255, 255)
    assert tuple(decoded[16, 16]) == (200, 30, 30)


def test_resize_square_squashes_without_cropping() -> None:
    picture = Image.new("RGB", (200, 100), (0, 0, 255))
    picture.paste((255, 0, 0), (0, 0, 10, 100))  # a red band at the left border
    array = resize_square(picture, 64)
    assert array.shape == (64, 64, 3) and array.dtype == np.uint8
    assert array[32, 0, 0] > 200  # the border survives: nothing was cropped
