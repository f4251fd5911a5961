"""Is the correspondence faithful? Deleting the hit's box of the top matched region pair (blurred
fill, as in the deletion curves) should lower the similarity to the unmodified query more than deleting a box
of the same size at a random place. Compared per pair against the mean of several random boxes."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from search.correspondence import Correspondence
from search.faithfulness import Embed, blurred_copy

DEFAULT_RANDOM_BOXES = 16


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


def box_deletion(embed: Embed, hit_pixels: torch.Tensor, partner: np.ndarray, correspondence: Correspondence,
                 rng: np.random.Generator, random_count: int = DEFAULT_RANDOM_BOXES) -> BoxDeletion:
    """`hit_pixels` (3, S, S) uint8, `partner` the unmodified query's vector."""
    side = hit_pixels.shape[-1]
    top = correspondence.top_regions(1)[0]
    x0, y0, x1, y1 = top.hit.box(correspondence.hit_grid, side, side)
    boxes = [[x0, y0, x1, y1], *random_boxes(side, x1 - x0, y1 - y0, random_count, rng)]
    blurred = blurred_copy(hit_pixels)
    images = [hit_pixels]
    for left, upper, right, lower in boxes:
        image = hit_pixels.clone()
        image[:, upper:lower, left:right] = blurred[:, upper:lower, left:right]
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
