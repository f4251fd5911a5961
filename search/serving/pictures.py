"""An image as query time needs it: model-ready pixels, a display copy, and where it came from.

Model pixels are decoded exactly as the indexer decodes a file (same JPEG draft size, same
square resize), so an uploaded copy of an indexed photo gets the vector that is stored for it.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from whysim.indexer.catalog.repository import ImageInfo
from whysim.indexer.imaging import DEFAULT_MAX_PIXELS, decode_image
from whysim.indexer.pipeline.reading import model_pixels

DEFAULT_DISPLAY_SIDE = 512


class ImageUnavailable(LookupError):
    """A catalogued image whose file cannot be served (gone, outside its collection, undecodable)."""


@dataclass(frozen=True)
class Picture:
    pixels: torch.Tensor  # (3, S, S) uint8, what the model sees
    display: Image.Image  # RGB, EXIF orientation applied, longest side <= the display side
    width: int  # the original's size as displayed
    height: int


def read_picture(data: bytes, input_size: int, display_side: int = DEFAULT_DISPLAY_SIDE,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> Picture:
    """Decodes untrusted bytes; raises whysim.indexer.imaging.ImageRejected (or ImageTooLarge)."""
    for_model = decode_image(data, max_pixels=max_pixels, draft_size=input_size)
    pixels = model_pixels(for_model.image, input_size)
    if for_model.image.size in ((for_model.width, for_model.height), (for_model.height, for_model.width)):
        display = for_model.image  # not reduced while decoding: good enough to display
    else:
        display = decode_image(data, max_pixels=max_pixels, draft_size=display_side).image
    display.thumbnail((display_side, display_side), Image.Resampling.BILINEAR)  # in place: no full-size copy
    return Picture(pixels, display, for_model.width, for_model.height)


def bytes_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def collection_file(info: ImageInfo) -> Path | None:
    """The image's file, but only when it resolves (symlinks included) inside its collection root."""
    try:
        root = Path(info.collection_root).resolve(strict=True)
        path = (root / info.path).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not path.is_relative_to(root) or not path.is_file():
        return None
    return path


def read_collection_file(info: ImageInfo) -> bytes:
    path = collection_file(info)
    if path is None:
        raise ImageUnavailable(f"the file of image {info.id} ({info.path}) is missing or outside its collection")
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ImageUnavailable(f"cannot read the file of image {info.id}: {exc.strerror or exc}") from exc


def image_version(info: ImageInfo) -> str:
    """Changes whenever the catalogued content changes: keys caches and versions URLs."""
    return (info.sha256 or f"{info.size_bytes}-{info.mtime_ns}")[:16]
