"""Deletion/insertion curves and AUCs on hand-made cases where the right answer is known."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.object_model import OBJECT, SIDE, checkered_object_image, object_only_embed
from whysim.search.evaluation.faithfulness import (
    STEPS,
    blurred_copy,
    normalised_auc,
    perturbation_curves,
    pixel_ranks,
    random_map,
    step_masks,
)


def object_map(value_inside: float, value_outside: float) -> np.ndarray:
    saliency = np.full((SIDE, SIDE), value_outside, dtype=np.float32)
    saliency[OBJECT] = value_inside
    return saliency


def test_normalised_auc_of_hand_computed_curves() -> None:
    assert normalised_auc(np.array([1.0, 0.0])) == pytest.approx(0.5)
    assert normalised_auc(np.full(51, 0.3)) == pytest.approx(0.3)
    assert normalised_auc(np.array([0.0, 1.0, 1.0])) == pytest.approx(0.75)
    assert normalised_auc(np.linspace(1.0, 0.0, 51)) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        normalised_auc(np.array([1.0]))


def test_ranks_follow_map_values_and_break_ties_reproducibly() -> None:
    saliency = np.array([[0.1, 0.9], [0.5, 0.5]])
    first = pixel_ranks(saliency, np.random.default_rng(3))
    assert first[0, 1] == 0 and first[0, 0] == 3 and {first[1, 0], first[1, 1]} == {1, 2}
    assert np.array_equal(first, pixel_ranks(saliency, np.random.default_rng(3)))
    flat = np.zeros((8, 8))
    orders = {tuple(pixel_ranks(flat, np.random.default_rng(seed)).ravel()) for seed in range(5)}
    assert len(orders) == 5  # a flat map gives a random order, not raster order


def test_step_masks_cover_two_percent_more_pixels_each_step() -> None:
    ranks = np.arange(100).reshape(10, 10)
    masks = step_masks(ranks)
    assert masks.shape == (STEPS + 1, 1, 10, 10)
    assert [int(m.sum()) for m in masks] == [2 * t for t in range(STEPS + 1)]
    assert bool(masks[1, 0, 0, 0]) and bool(masks[1, 0, 0, 1]) and not bool(masks[1, 0, 0, 2])


def test_blurred_copy_keeps_flat_regions_and_erases_texture() -> None:
    image = checkered_object_image()
    blurred = blurred_copy(image)
    assert blurred.dtype == torch.uint8 and blurred.shape == image.shape
    assert int(blurred[:, -1, -1].max()) == 0  # far from the object, black stays black
    centre = blurred[:, 2:6, 2:6].float()
    assert 80 < centre.mean() < 175 and centre.std() < 40  # the checkerboard became grey


def test_a_perfect_map_deletes_faster_and_inserts_faster_than_random_and_its_reverse() -> None:
    image = checkered_object_image()
    partner = object_only_embed(image[None])[0]
    maps = {"perfect": object_map(1.0, 0.0), "reverse": object_map(0.0, 1.0),
            "random": random_map((4, 4), np.random.default_rng(0))}
    curves = perturbation_curves(object_only_embed, image, partner, maps, np.random.default_rng(1), batch_size=16)
    deletion = {name: c.deletion_auc for name, c in curves.items()}
    insertion = {name: c.insertion_auc for name, c in curves.items()}
    assert deletion["perfect"] < deletion["random"] < deletion["reverse"]
    assert insertion["perfect"] > insertion["random"] > insertion["reverse"]
    # The object is a quarter of the image: removing it first loses nearly everything by 25%.
    assert deletion["perfect"] < 0.2 and deletion["reverse"] > 0.8
    assert curves["perfect"].deletion[13] < 0.1 and curves["reverse"].deletion[37] == pytest.approx(1.0)


def test_curves_start_and_end_at_the_unmodified_and_fully_blurred_scores() -> None:
    image = checkered_object_image()
    partner = object_only_embed(image[None])[0]
    maps = {"a": object_map(1.0, 0.0), "b": random_map((4, 4), np.random.default_rng(0))}
    curves = perturbation_curves(object_only_embed, image, partner, maps, np.random.default_rng(2), batch_size=7)
    blurred_score = float(object_only_embed(blurred_copy(image)[None])[0] @ partner)
    for c in curves.values():
        assert c.deletion.shape == c.insertion.shape == (STEPS + 1,)
        assert c.deletion[0] == pytest.approx(1.0) and c.insertion[-1] == pytest.approx(1.0)
        assert c.deletion[-1] == pytest.approx(blurred_score, abs=1e-6)
        assert c.insertion[0] == pytest.approx(blurred_score, abs=1e-6)
