"""Faithfulness of explanation maps: RISE-style deletion and insertion curves for image pairs.

One image of a pair is perturbed while its partner stays as it is. Its pixels are ranked by
map value (ties broken in a seeded random order). The *deletion* curve replaces the top
0%, 2%, ..., 100% of pixels with a blurred copy of the image; the *insertion* curve starts
from the blurred copy and reveals the original's top pixels in the same steps. Each point
is the cosine similarity of the perturbed image to the unmodified partner.

A curve's normalised AUC is its trapezoidal area over the fraction axis [0, 1], i.e. the
mean similarity along the curve, on the similarity scale. For a map of the evidence *for*
similarity, a faithful map gives a lower deletion AUC (similarity falls as soon as its top
regions go) and a higher insertion AUC than a random map; a map of the evidence *against*
similarity does the opposite.

The random baseline draws a map at the target layer's resolution and upsamples it like
the Grad-CAM maps, so it deletes contiguous regions of the same granularity rather than
scattered pixels (which a CNN barely notices under a blurred fill).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch

from whysim.search.explain.gradcam import upsample_map

STEPS = 50  # 2% of the pixels per step: 51 points per curve
BLUR_SIGMA_PER_SIDE = 1 / 32  # 7 px at 224: removes texture and edges, keeps the colour layout
DEFAULT_BATCH_SIZE = 64

Embed = Callable[[torch.Tensor], np.ndarray]
"""uint8 images (B, 3, S, S) -> L2-normalised vectors (B, D), e.g. indexer's Embedder."""


@dataclass(frozen=True)
class Curves:
    deletion: np.ndarray  # (STEPS + 1,) similarity after removing 0%, 2%, ..., 100%
    insertion: np.ndarray  # (STEPS + 1,) similarity after revealing 0%, 2%, ..., 100%

    @property
    def deletion_auc(self) -> float:
        return normalised_auc(self.deletion)

    @property
    def insertion_auc(self) -> float:
        return normalised_auc(self.insertion)


def normalised_auc(curve: np.ndarray) -> float:
    """Trapezoidal area under a curve sampled evenly over the fraction axis [0, 1]."""
    values = np.asarray(curve, dtype=np.float64)
    if values.size < 2:
        raise ValueError("a curve needs at least two points")
    return float((values[:-1] + values[1:]).sum() / (2 * (values.size - 1)))


def blurred_copy(pixels: torch.Tensor) -> torch.Tensor:
    """A Gaussian-blurred copy of uint8 images (..., 3, S, S), sigma proportional to the side."""
    side = pixels.shape[-1]
    sigma = max(side * BLUR_SIGMA_PER_SIDE, 1.0)
    kernel = 2 * int(round(2 * sigma)) + 1
    # torchvision is imported on use: it adds over a second to every `whysim` command's start.
    import torchvision.transforms.functional as TF

    blurred = TF.gaussian_blur(pixels.float(), kernel_size=[kernel, kernel], sigma=[sigma, sigma])
    return blurred.round().clamp(0, 255).to(torch.uint8)


def pixel_ranks(saliency: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Rank of every pixel (0 = most salient), ties in a random order drawn from `rng`."""
    flat = np.asarray(saliency, dtype=np.float64).ravel()
    tiebreak = rng.permutation(flat.size)
    order = np.lexsort((tiebreak, -flat))
    ranks = np.empty(flat.size, dtype=np.int64)
    ranks[order] = np.arange(flat.size)
    return ranks.reshape(np.shape(saliency))


def step_masks(ranks: np.ndarray, steps: int = STEPS) -> torch.Tensor:
    """(steps + 1, 1, H, W) bool: mask t covers the round(t / steps * H * W) top-ranked pixels."""
    counts = np.round(np.linspace(0, ranks.size, steps + 1)).astype(np.int64)
    masks = torch.from_numpy(ranks)[None] < torch.from_numpy(counts)[:, None, None]
    return masks[:, None]


def random_map(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    return rng.random(shape).astype(np.float32)


def perturbation_curves(embed: Embed, pixels: torch.Tensor, partner: np.ndarray,
                        maps: Mapping[str, np.ndarray], rng: np.random.Generator,
                        steps: int = STEPS, batch_size: int = DEFAULT_BATCH_SIZE) -> dict[str, Curves]:
    """Deletion and insertion curves of one image (3, S, S) uint8 for each named map.

    `partner` is the unmodified partner's vector (D,). Maps may have any resolution; they
    are upsampled to the image. The unmodified and fully blurred images are shared by all
    curves, so each map costs 2 * (steps - 1) images, embedded in batches of `batch_size`.
    """
    height, width = pixels.shape[-2:]
    blurred = blurred_copy(pixels)
    images = [pixels[None], blurred[None]]
    for saliency in maps.values():
        masks = step_masks(pixel_ranks(upsample_map(saliency, height, width), rng), steps)[1:-1]
        images.append(torch.where(masks, blurred, pixels))  # deletion, interior steps
        images.append(torch.where(masks, pixels, blurred))  # insertion, interior steps
    batch = torch.cat(images)
    vectors = np.concatenate([embed(batch[i:i + batch_size]) for i in range(0, len(batch), batch_size)])
    scores = vectors.astype(np.float64) @ np.asarray(partner, dtype=np.float64)
    original, empty = scores[0], scores[1]
    inner = steps - 1
    curves = {}
    for index, name in enumerate(maps):
        start = 2 + 2 * index * inner
        deleted, inserted = scores[start:start + inner], scores[start + inner:start + 2 * inner]
        curves[name] = Curves(np.concatenate([[original], deleted, [empty]]),
                              np.concatenate([[empty], inserted, [original]]))
    return curves
