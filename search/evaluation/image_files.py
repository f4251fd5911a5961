"""Reading an image file from disk into what an explanation needs: a display copy and model pixels."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from whysim.indexer.imaging import DEFAULT_MAX_PIXELS, ImageRejected
from whysim.search.serving.pictures import DEFAULT_DISPLAY_SIDE, read_picture


@dataclass(frozen=True)
class ImageFile:
    path: Path
    image: Image.Image  # RGB, EXIF orientation applied, longest side <= the display side
    pixels: torch.Tensor  # (3, S, S) uint8, what the model sees
    width: int  # the original's size, upright
    height: int


def read_image_file(path: Path, input_size: int, display_side: int = DEFAULT_DISPLAY_SIDE,
                    max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageFile:
    """Decodes `path` as an upload would be; raises ImageRejected naming the file when it is unusable."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageRejected(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        picture = read_picture(data, input_size, display_side, max_pixels)
    except ImageRejected as exc:
        raise ImageRejected(f"{path}: {exc}") from exc
    return ImageFile(path, picture.display, picture.pixels, picture.width, picture.height)
