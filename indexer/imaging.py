"""Decoding untrusted image files into RGB pictures, with a reason for every refusal."""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_EXTENSIONS = frozenset({
    ".jpg", ".jpeg", ".jpe", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".ppm", ".pgm",
})
# Larger than PIL's default (89 MP) so scans and pathology tiles fit, small enough that a
# decompression bomb cannot take the machine's memory (128 MP of RGB is ~400 MB).
DEFAULT_MAX_PIXELS = 128_000_000


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

    `draft_size` lets JPEG decoding shrink by a power of two while staying at least that
    size on both sides, which makes large photos several times cheaper to decode.
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
            transpose = _orientation_swaps_axes(image)
            if draft_size and image.format == "JPEG":
                image.draft("RGB", (draft_size, draft_size))
            ImageOps.exif_transpose(image, in_place=True)  # decodes; in place: no copy of the pixels
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
    if transpose:
        width, height = height, width
    return DecodedImage(rgb, width, height)


def _orientation_swaps_axes(image: Image.Image) -> bool:
    try:
        orientation = image.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - a broken EXIF block must not reject the picture
        return False
    return orientation in (5, 6, 7, 8)


def resize_square(image: Image.Image, size: int) -> np.ndarray:
    """Resizes the whole picture (no crop) to size x size; returns HxWx3 uint8.

    No crop, because in rooms or scans the evidence is often near the border; squashing the
    aspect ratio costs less retrieval quality than losing it.
    """
    resized = image.resize((size, size), Image.Resampling.BILINEAR)
    return np.array(resized, dtype=np.uint8)  # a writable copy, which torch can wrap

