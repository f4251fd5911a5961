"""A toy model that looks at one region only: a checkerboard in the top-left quarter of a black
image. Blurring or filling that quarter erases what it sees; nothing else matters to it."""
from __future__ import annotations

import numpy as np
import torch

SIDE = 16
OBJECT = (slice(0, 8), slice(0, 8))  # the only region the toy model looks at: 64 of 256 pixels


def checkered_object_image() -> torch.Tensor:
    """A black image with an 8x8 black-and-white checkerboard in the top-left corner."""
    image = torch.zeros(3, SIDE, SIDE, dtype=torch.uint8)
    y, x = torch.meshgrid(torch.arange(8), torch.arange(8), indexing="ij")
    image[:, OBJECT[0], OBJECT[1]] = (((x + y) % 2) * 255).to(torch.uint8)
    return image


def object_only_embed(images: torch.Tensor) -> np.ndarray:
    """The centred object region as the vector: blurring the checkerboard erases it."""
    region = images[:, :, OBJECT[0], OBJECT[1]].float().flatten(1) - 127.5
    return torch.nn.functional.normalize(region, dim=1).numpy()
