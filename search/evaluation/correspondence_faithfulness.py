"""Is the correspondence faithful? Deleting the hit's box of the top matched region pair should
lower the similarity to the unmodified query more than deleting a box of the same size at a random
place. Compared per pair against the mean of several random boxes.

A box is deleted by filling it with the network's input mean colour ("mean", the default: the
input that normalises to zero) or with a blurred copy of the image ("blur", as the deletion
curves do). A blurred box keeps its colours, and in small photos of broad categories colour is
much of what a region holds: on flowers the blurred box barely moves the score, whichever box
is deleted (docs/studies.md, "Faithfulness of the correspondence")."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from whysim.search.evaluation.faithfulness import Embed, blurred_copy
from whysim.search.explain.correspondence import Correspondence

DEFAULT_RANDOM_BOXES = 16
MEAN_FILL, BLUR_FILL = "mean", "blur"
BOX_FILLS = (MEAN_FILL, BLUR_FILL)
DEFAULT_BOX_FILL = MEAN_FILL


@dataclass(frozen=True)
class BoxCheck:
    """How the correspondence check deletes boxes: how many random boxes, filled with what."""

    random_boxes: int = DEFAULT_RANDOM_BOXES
    fill: str = DEFAULT_BOX_FILL

    def __post_init__(self) -> None:
        if self.fill not in BOX_FILLS:
            raise ValueError(f"box fill must be one of {', '.join(BOX_FILLS)}")


@dataclass(frozen=True)
class BoxDeletion:
    top_drop: float  # similarity lost when the top matched hit box is blurred
    random_drop: float  # mean loss over the random boxes of the same size
    share: float  # the top pair's share of the similarity

    @property
    def difference(self) -> float:
        return self.top_drop - self.random_drop

    def to_dict(self) -> dict[str, float]:
        return {"top_drop": self.top_drop, "random_drop": self.random_drop, "share": self.share}


def random_boxes(side: int, box_width: int, box_height: int, count: int,
                 rng: np.random.Generator) -> list[list[int]]:
    lefts = rng.integers(0, side - box_width + 1, count)
    tops = rng.integers(0, side - box_height + 1, count)
    return [[int(x), int(y), int(x) + box_width, int(y) + box_height] for x, y in zip(lefts, tops)]


def deletion_fill(pixels: torch.Tensor, fill: str, input_mean: torch.Tensor) -> torch.Tensor:
    """What a deleted box shows, as a uint8 image like `pixels` (3, S, S); `input_mean` is the
    branch's (3 values on the 0-255 scale)."""
    if fill == BLUR_FILL:
        return blurred_copy(pixels)
    if fill == MEAN_FILL:
        colour = input_mean.detach().flatten().cpu().round().clamp(0, 255).to(torch.uint8)
        return colour.view(3, 1, 1).expand_as(pixels)
    raise ValueError(f"box fill must be one of {', '.join(BOX_FILLS)}")


def box_deletion(embed: Embed, hit_pixels: torch.Tensor, partner: np.ndarray, correspondence: Correspondence,
                 rng: np.random.Generator, input_mean: torch.Tensor, check: BoxCheck = BoxCheck()) -> BoxDeletion:
    """`hit_pixels` (3, S, S) uint8, `partner` the unmodified query's vector, `input_mean` the branch's."""
    side = hit_pixels.shape[-1]
    top = correspondence.top_regions(1)[0]
    x0, y0, x1, y1 = top.hit.box(correspondence.hit_grid, side, side)
    boxes = [[x0, y0, x1, y1], *random_boxes(side, x1 - x0, y1 - y0, check.random_boxes, rng)]
    filled = deletion_fill(hit_pixels, check.fill, input_mean)
    images = [hit_pixels]
    for left, upper, right, lower in boxes:
        image = hit_pixels.clone()
        image[:, upper:lower, left:right] = filled[:, upper:lower, left:right]
        images.append(image)
    scores = embed(torch.stack(images)).astype(np.float64) @ np.asarray(partner, dtype=np.float64)
    drops = scores[0] - scores[1:]
    return BoxDeletion(float(drops[0]), float(drops[1:].mean()), top.share)


def summarise_box_deletions(deletions: Sequence[BoxDeletion]) -> dict[str, float]:
    """Share of pairs where the top box lowers the similarity more, and the paired mean difference with its t."""
    differences = np.array([d.difference for d in deletions], dtype=np.float64)
    count = differences.size
    std = float(differences.std(ddof=1)) if count > 1 else 0.0
    return {"n": count, "top_lowers_more": float((differences > 0).mean()),
            "mean_difference": float(differences.mean()), "std_difference": std,
            "t": float(differences.mean() / (std / np.sqrt(count))) if std > 0 else 0.0,
            "top_drop": float(np.mean([d.top_drop for d in deletions])),
            "random_drop": float(np.mean([d.random_drop for d in deletions]))}
