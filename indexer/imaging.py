"""Decoding untrusted image files into RGB pictures, with a reason for every refusal."""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_EXTENSIONS = frozenset({
    ".jpg", ".jpeg", ".jpe", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".ppm", ".pgm",
})
# Larger than PIL's default (89 MP) so scans and pathology tiles fit, small enough that a
# decompression bomb cannot take the machine's memory (128 MP of RGB is ~400 MB).
DEFAULT_MAX_PIXELS = 128_000_000
# EXIF orientation -> the transpose that shows the picture upright (as ImageOps.exif_transpose).
ORIENTATION_TRANSPOSES = {
    2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
AXIS_SWAPPING_ORIENTATIONS = frozenset({5, 6, 7, 8})
REDUCIBLE_MODES = frozenset({"RGB", "RGBA", "L", "LA", "I", "F", "CMYK"})


class ImageRejected(ValueError):
    """The file is not an image we can use; the message is the reason recorded in the catalog."""


class ImageTooLarge(ImageRejected):
    """The image has more pixels than allowed (or is a decompression bomb)."""


@dataclass(frozen=True)
class DecodedImage:
    image: Image.Image  # RGB, EXIF orientation applied
    width: int  # as displayed (after EXIF rotation), before any draft reduction
    height: int


def _to_rgb(image: Image.Image) -> Image.Image:
    """Converts any PIL mode to 8-bit RGB, keeping the picture a person would see."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # High bit depth (medical, scientific): stretch the used range onto 0..255 instead of
        # clipping, which would turn a 12-bit scan into a white page.
        values = np.asarray(image, dtype=np.float32)
        low, high = float(values.min()), float(values.max())
        scale = 255.0 / (high - low) if high > low else 0.0
        gray = ((values - low) * scale).clip(0, 255).astype(np.uint8)
        return Image.fromarray(gray).convert("RGB")
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB")
    return image.convert("RGB")


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS,
                 draft_size: int | None = None) -> DecodedImage:
    """Decodes bytes into RGB with EXIF orientation honoured.

    `draft_size` shrinks the picture by a power of two while it stays at least that size on
    both sides: JPEG while decoding (several times cheaper), other formats right after
    (Image.reduce), so that rotation and conversion to RGB never work on the full-size pixels.
    Raises ImageRejected with a short reason for anything unusable.
    """
    if not data:
        raise ImageRejected("empty file")
    try:
        with warnings.catch_warnings():
            # Our own pixel limit applies below; PIL still refuses outright anything over
            # twice its global MAX_IMAGE_PIXELS (DecompressionBombError, caught below).
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise ImageTooLarge(
                    f"too many pixels: {width}x{height} exceeds the limit of {max_pixels:,}")
            if width == 0 or height == 0:
                raise ImageRejected("image has no pixels")
            orientation = _orientation(image)
            decoded_size(image, draft_size)  # sets a JPEG's draft: decoded small
            image.load()
            if draft_size and image.format != "JPEG":
                image = _reduced(image, draft_size)
            if orientation in ORIENTATION_TRANSPOSES:
                image = image.transpose(ORIENTATION_TRANSPOSES[orientation])
            rgb = _to_rgb(image)
    except ImageRejected:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"decompression bomb refused: {exc}") from exc
    except UnidentifiedImageError:
        raise ImageRejected("not a recognised image format") from None
    except (OSError, SyntaxError, ValueError, TypeError, IndexError, EOFError) as exc:
        reason = str(exc) or type(exc).__name__
        if "truncated" in reason.lower():
            reason = "truncated image file"
        raise ImageRejected(f"cannot decode: {reason}") from exc
    if orientation in AXIS_SWAPPING_ORIENTATIONS:
        width, height = height, width
    return DecodedImage(rgb, width, height)


def decoded_size(image: Image.Image, draft_size: int | None) -> tuple[int, int]:
    """The size `image` (opened, not yet loaded) decodes at: a JPEG's draft when `draft_size`
    is given (this sets the draft), the full size otherwise."""
    if draft_size and image.format == "JPEG":
        image.draft("RGB", (draft_size, draft_size))
    return image.size


def _reduced(image: Image.Image, draft_size: int) -> Image.Image:
    """Shrunk by the largest power of two that keeps both sides at least `draft_size`."""
    factor = 1
    while min(image.size) // (factor * 2) >= draft_size:
        factor *= 2
    if factor == 1:
        return image
    if image.mode not in REDUCIBLE_MODES:
        image = _to_rgb(image)
    return image.reduce(factor)


def _orientation(image: Image.Image) -> int:
    try:
        return int(image.getexif().get(0x0112, 1))
    except Exception:  # noqa: BLE001 - a broken EXIF block must not reject the picture
        return 1


def resize_square(image: Image.Image, size: int) -> np.ndarray:
    """Resizes the whole picture (no crop) to size x size; returns HxWx3 uint8.

    No crop, because in rooms or scans the evidence is often near the border; squashing the
    aspect ratio costs less retrieval quality than losing it.
    """
    resized = image.resize((size, size), Image.Resampling.BILINEAR)
    return np.array(resized, dtype=np.uint8)  # a writable copy, which torch can wrap

