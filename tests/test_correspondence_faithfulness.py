"""The correspondence check on a toy model that looks at one region only: deleting that region's
box must cost the similarity, deleting boxes elsewhere must not."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.object_model import checkered_object_image, object_only_embed
from whysim.search.evaluation.correspondence_faithfulness import BoxCheck, box_deletion, deletion_fill
from whysim.search.evaluation.faithfulness import blurred_copy
from whysim.search.explain.correspondence import Correspondence

GRID = (2, 2)  # 2 x 2 cells of 8 x 8 pixels: the object is cell 0
OBJECT_CELL, FAR_CELL = 0, 3
INPUT_MEAN = torch.tensor([124.0, 116.0, 104.0]).view(1, 3, 1, 1)


def correspondence_onto(hit_cell: int) -> Correspondence:
    """All of the similarity on one pair of cells: query cell 0 with `hit_cell`."""
    cells = GRID[0] * GRID[1]
    contributions = np.full((cells, cells), 1e-4)
    contributions[0, hit_cell] = 1.0
    return Correspondence(contributions=contributions, query_grid=GRID, hit_grid=GRID,
                          query_to_hit=np.full(cells, hit_cell), hit_to_query=np.zeros(cells, dtype=np.int64),
                          exact=True, remainder=0.0, hit_distinctive=contributions.sum(axis=0),
                          query_gram=np.eye(cells))


def test_the_mean_fill_is_the_networks_input_mean_colour_and_blur_is_the_blurred_copy() -> None:
    image = checkered_object_image()
    mean = deletion_fill(image, "mean", INPUT_MEAN)
    assert mean.shape == image.shape and mean.dtype == torch.uint8
    assert mean[:, 0, 0].tolist() == [124, 116, 104] and bool((mean == mean[:, :1, :1]).all())
    assert torch.equal(deletion_fill(image, "blur", INPUT_MEAN), blurred_copy(image))
    with pytest.raises(ValueError, match="box fill"):
        deletion_fill(image, "noise", INPUT_MEAN)
    with pytest.raises(ValueError, match="box fill"):
        BoxCheck(fill="noise")


@pytest.mark.parametrize("fill", ["mean", "blur"])
def test_deleting_the_matched_box_costs_more_than_random_boxes(fill: str) -> None:
    image = checkered_object_image()
    partner = object_only_embed(image[None])[0]
    check = BoxCheck(random_boxes=12, fill=fill)  # an 8 x 8 box anywhere overlaps the object a quarter on average
    correspondence = correspondence_onto(OBJECT_CELL)
    matched = box_deletion(object_only_embed, image, partner, correspondence, np.random.default_rng(0), INPUT_MEAN,
                           check)
    assert matched.top_drop > 0.5  # the whole object is gone
    assert matched.random_drop < matched.top_drop / 2  # most random boxes miss it
    assert matched.difference > 0.0 and matched.share == pytest.approx(1.0 / correspondence.similarity)


def test_a_box_away_from_what_the_model_sees_costs_nothing() -> None:
    image = checkered_object_image()
    partner = object_only_embed(image[None])[0]
    elsewhere = box_deletion(object_only_embed, image, partner, correspondence_onto(FAR_CELL),
                             np.random.default_rng(0), INPUT_MEAN, BoxCheck(random_boxes=12))
    assert elsewhere.top_drop == pytest.approx(0.0, abs=1e-6)
    assert elsewhere.difference < 0.0
