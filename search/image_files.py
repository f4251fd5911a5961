"""Reading an image file from disk into what an explanation needs: a display copy and model pixels."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from indexer.imaging import DEFAULT_MAX_PIXELS, ImageRejected, decode_image, resize_square


@dataclass(frozen=True)
class ImageFile:
    path: Path
    image: Image.Image  # RGB, EXIF orientation applied, at least `display_side` where it was
    pixels: torch.Tensor  # (3, S, S) uint8, what the model sees


def model_pixels(image: Image.Image, input_size: int) -> torch.Tensor:
    """The square uint8 tensor (3, S, S) the branch embeds, resized exactly as the indexer does."""
    return torch.from_numpy(resize_square(image, input_size)).permute(2, 0, 1).contiguous()


def read_image_file(path: Path, input_size: int, display_side: int = 512,
                    max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageFile:
    """Decodes `path`; raises ImageRejected with the file name in the message when it is unusable."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageRejected(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        # The same JPEG draft as the indexer, so the pair's similarity matches the index's scores.
        for_model = decode_image(data, max_pixels=max_pixels, draft_size=input_size)
        reduced = for_model.image.size not in ((for_model.width, for_model.height),
                                               (for_model.height, for_model.width))
        display = decode_image(data, max_pixels=max_pixels, draft_size=display_side) if reduced else for_model
    except ImageRejected as exc:
        raise ImageRejected(f"{path}: {exc}") from exc
    return ImageFile(path, display.image, model_pixels(for_model.image, input_size))
