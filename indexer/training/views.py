"""Image views for training: fixed views (cached once per image) and random augmentation.

The "orig" view is exactly what the indexer feeds the model (whysim.indexer.pipeline.reading),
so features cached for it equal the ones computed at index time.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image

from whysim.indexer.imaging import DEFAULT_MAX_PIXELS, ImageRejected, decode_image, resize_square

if TYPE_CHECKING:
    from torchvision.transforms import v2

VIEWS = ("orig", "flip", "crop")
DEFAULT_VIEWS = VIEWS
# The "crop" view keeps the central 80% of each side (64% of the area): a zoom-in.
CROP_SIDE = 0.8


def parse_views(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in VIEWS]
    if unknown or not names:
        raise ValueError(f"unknown views {unknown or text!r}; choose from {', '.join(VIEWS)}")
    if names[0] != "orig":
        names = ("orig", *(name for name in names if name != "orig"))
    return tuple(dict.fromkeys(names))


def _center_crop(image: Image.Image, side: float) -> Image.Image:
    width, height = image.size
    crop_w, crop_h = max(1, round(width * side)), max(1, round(height * side))
    left, top = (width - crop_w) // 2, (height - crop_h) // 2
    return image.crop((left, top, left + crop_w, top + crop_h))


def _to_tensor(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def render_views(image: Image.Image, input_size: int, views: Sequence[str]) -> torch.Tensor:
    """(V, 3, S, S) uint8, in the order of `views`."""
    base = resize_square(image, input_size)
    rendered = []
    for name in views:
        if name == "orig":
            rendered.append(_to_tensor(base))
        elif name == "flip":
            rendered.append(_to_tensor(np.ascontiguousarray(base[:, ::-1])))
        elif name == "crop":
            rendered.append(_to_tensor(resize_square(_center_crop(image, CROP_SIDE), input_size)))
        else:
            raise ValueError(f"unknown view {name!r}")
    return torch.stack(rendered)


def load_picture(path: Path, input_size: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decodes as the indexer does; raises ImageRejected (or OSError) with the reason."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageRejected(f"cannot read file: {exc.strerror or exc}") from exc
    return decode_image(data, max_pixels=max_pixels, draft_size=input_size).image


def image_augmentation(input_size: int) -> v2.Compose:
    """Random crop of 50-100% of the picture, horizontal flip, mild colour jitter."""
    # torchvision is imported on use: it adds over a second to every `whysim` command's start.
    from torchvision.transforms import v2

    return v2.Compose([
        v2.RandomResizedCrop(input_size, scale=(0.5, 1.0), antialias=True),
        v2.RandomHorizontalFlip(),
        v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02),
    ])


def augmented_pixels(image: Image.Image, transform: v2.Compose) -> torch.Tensor:
    augmented = transform(image)
    return _to_tensor(np.array(augmented, dtype=np.uint8))
