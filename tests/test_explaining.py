"""Paired Grad-CAM against pytorch-grad-cam, and the explainer's symmetry, determinism, batching and edge cases."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_picture
from PIL import Image

from whysim.indexer.model.loading import ModelRequest, build_branch
from whysim.indexer.model.whitening import Whitening
from whysim.indexer.pipeline.reading import model_pixels
from whysim.search.explain.gradcam import (
    CONTRIBUTION,
    DISSIMILAR,
    GRAD_CAM,
    SIMILAR,
    PairExplainer,
    PairExplanation,
    upsample_map,
)

SIZE = 128  # a 4x4 target layer: coarse enough to be fast, fine enough for a meaningful correlation


@pytest.fixture(scope="module")
def branch():
    return build_branch(ModelRequest(input_size=SIZE))


@pytest.fixture(scope="module")
def pictures() -> torch.Tensor:
    """Eight generated photos, (8, 3, S, S) uint8: blobs at even indexes, stripes at odd ones."""
    images = [make_picture(seed, kind="stripes" if seed % 2 else "blobs") for seed in range(8)]
    return torch.stack([model_pixels(image, SIZE) for image in images])


def middle_threshold(branch, query: torch.Tensor, hits: torch.Tensor) -> float:
    """A threshold between the pairs' similarities, so both verdicts occur."""
    scores = [e.similarity for e in PairExplainer(branch).explain(query, hits)]
    return float(np.median(scores))


def reference_cam(branch, image: torch.Tensor, partner: torch.Tensor, sign: float) -> np.ndarray:
    """pytorch-grad-cam's GradCAM at the branch's target layer, target = sign * cosine to the partner."""
    from pytorch_grad_cam import GradCAM

    with GradCAM(model=branch, target_layers=[branch.target_layer]) as cam:
        return cam(input_tensor=image[None].float(), targets=[lambda out: sign * (out * partner).sum()])[0]


def assert_same_map(ours: np.ndarray, reference: np.ndarray, label: str) -> float:
    """Pearson >= 0.99 at input resolution; an all-zero map must be all-zero in both."""
    upsampled = upsample_map(ours, *reference.shape)
    ours_zero, reference_zero = upsampled.max() < 1e-6, reference.max() < 1e-6
    assert ours_zero == reference_zero, f"{label}: only one of the maps is all zero"
    if ours_zero:
        return 1.0
    pearson = float(np.corrcoef(upsampled.ravel(), reference.ravel())[0, 1])
    assert pearson >= 0.99, f"{label}: Pearson {pearson:.4f}"
    return pearson


def test_maps_match_pytorch_grad_cam_for_both_verdicts_and_sides(branch, pictures) -> None:
    query, hits = pictures[0], pictures[1:5]
    threshold = middle_threshold(branch, query, hits)
    explanations = PairExplainer(branch, threshold).explain(query, hits)
    assert {e.verdict for e in explanations} == {SIMILAR, DISSIMILAR}
    with torch.no_grad():
        vectors = branch(pictures[:5].float())
    pearsons = []
    for index, explanation in enumerate(explanations):
        hit = hits[index]
        # Factual = evidence for the verdict: the cosine target for "similar", its negation otherwise.
        sign = 1.0 if explanation.verdict == SIMILAR else -1.0
        for side, image, partner in (("query", query, vectors[index + 1]), ("hit", hit, vectors[0])):
            maps = getattr(explanation, side)
            pearsons.append(assert_same_map(maps.factual, reference_cam(branch, image, partner, sign),
                                            f"pair {index} {side} factual ({explanation.verdict})"))
            pearsons.append(assert_same_map(maps.counterfactual, reference_cam(branch, image, partner, -sign),
                                            f"pair {index} {side} counterfactual ({explanation.verdict})"))
    assert len(pearsons) == 4 * len(hits)


def test_query_map_of_a_b_is_hit_map_of_b_a(branch, pictures) -> None:
    explainer = PairExplainer(branch)
    for first, second in ((0, 1), (2, 4), (3, 6)):
        forward = explainer.explain(pictures[first], pictures[second:second + 1])[0]
        backward = explainer.explain(pictures[second], pictures[first:first + 1])[0]
        assert forward.similarity == pytest.approx(backward.similarity, abs=1e-6)
        np.testing.assert_allclose(forward.query.factual, backward.hit.factual, atol=1e-5)
        np.testing.assert_allclose(forward.query.counterfactual, backward.hit.counterfactual, atol=1e-5)
        np.testing.assert_allclose(forward.hit.factual, backward.query.factual, atol=1e-5)


def all_maps(explanations: list[PairExplanation]) -> np.ndarray:
    return np.stack([np.stack([e.query.factual, e.query.counterfactual, e.hit.factual, e.hit.counterfactual])
                     for e in explanations])


def test_two_calls_give_identical_scores_and_maps(branch, pictures) -> None:
    explainer = PairExplainer(branch)
    first = explainer.explain(pictures[0], pictures[1:])
    second = explainer.explain(pictures[0], pictures[1:])
    assert [e.similarity for e in first] == [e.similarity for e in second]
    assert np.array_equal(all_maps(first), all_maps(second))


def test_batched_pairs_equal_one_pair_at_a_time(branch, pictures) -> None:
    explainer = PairExplainer(branch, threshold=middle_threshold(branch, pictures[0], pictures[1:]))
    batched = explainer.explain(pictures[0], pictures[1:])
    single = [explainer.explain(pictures[0], pictures[i:i + 1])[0] for i in range(1, len(pictures))]
    assert [e.verdict for e in batched] == [e.verdict for e in single]
    np.testing.assert_allclose([e.similarity for e in batched], [e.similarity for e in single], atol=1e-6)
    np.testing.assert_allclose(all_maps(batched), all_maps(single), atol=1e-4)


def test_all_zero_activations_give_zero_maps_not_nan(branch) -> None:
    channels = branch.card.dim
    zeros = torch.zeros(1, channels, 4, 4)
    explanation = PairExplainer(branch).explain_feature_maps(zeros, zeros.expand(2, -1, -1, -1))[0]
    maps = all_maps([explanation])
    assert np.isfinite(explanation.similarity) and np.isfinite(maps).all()
    assert maps.max() == 0.0
    assert upsample_map(explanation.hit.factual, 32, 32).max() == 0.0


def test_an_image_paired_with_itself_has_empty_maps(branch, pictures) -> None:
    """The cosine's gradient vanishes at s = 1: both maps must be empty, not normalised rounding noise."""
    explanation = PairExplainer(branch).explain(pictures[3], pictures[3:4])[0]
    assert explanation.similarity == pytest.approx(1.0, abs=1e-6)
    maps = all_maps([explanation])
    assert np.isfinite(maps).all() and maps.max() < 1e-3


def test_a_near_duplicate_keeps_its_gradients(branch) -> None:
    """No clamp on the similarity: a copy one grey level brighter (s > 0.9999) still has full maps."""
    original = make_picture(11)
    brighter = Image.fromarray((np.asarray(original, dtype=np.int16) + 1).clip(0, 255).astype(np.uint8))
    pixels = [model_pixels(image, SIZE) for image in (original, brighter)]
    explanation = PairExplainer(branch, threshold=0.5).explain(pixels[0], pixels[1][None])[0]
    assert 0.9999 < explanation.similarity < 1.0
    assert explanation.hit.factual.max() > 0.5 and explanation.query.factual.max() > 0.5


def test_factual_and_counterfactual_swap_when_the_threshold_crosses_the_score(branch, pictures) -> None:
    score = PairExplainer(branch).explain(pictures[0], pictures[5:6])[0].similarity
    below = PairExplainer(branch, threshold=score - 0.01).explain(pictures[0], pictures[5:6])[0]
    above = PairExplainer(branch, threshold=score + 0.01).explain(pictures[0], pictures[5:6])[0]
    assert (below.verdict, above.verdict) == (SIMILAR, DISSIMILAR)
    assert (below.threshold, above.threshold) == pytest.approx((score - 0.01, score + 0.01))
    assert np.array_equal(below.hit.factual, above.hit.counterfactual)
    assert np.array_equal(below.query.counterfactual, above.query.factual)
    assert below.hit.factual.max() > 0.5 and below.hit.counterfactual.max() > 0.5


def test_a_score_equal_to_the_threshold_is_similar(branch, pictures) -> None:
    score = PairExplainer(branch).explain(pictures[0], pictures[2:3])[0].similarity
    assert PairExplainer(branch, threshold=score).explain(pictures[0], pictures[2:3])[0].verdict == SIMILAR


def test_explain_refuses_an_empty_hit_batch(branch, pictures) -> None:
    with pytest.raises(ValueError, match="at least one hit"):
        PairExplainer(branch).explain(pictures[0], pictures[:0])


def test_maps_come_at_the_target_layer_resolution_in_unit_range(branch, pictures) -> None:
    explanation = PairExplainer(branch).explain(pictures[0], pictures[1:2])[0]
    assert explanation.hit.factual.shape == (SIZE // 32, SIZE // 32)
    maps = all_maps([explanation])
    assert maps.min() >= 0.0 and maps.max() <= 1.0
    assert Image.fromarray((upsample_map(explanation.hit.factual, 50, 70) * 255).astype(np.uint8)).size == (70, 50)


# ------------------------------------------------------------ correspondence and map methods

SAMPLES = Path(__file__).resolve().parents[1] / "samples" / "flowers"


def sample_pixels(count: int, size: int = SIZE) -> torch.Tensor:
    """Real photos from samples/flowers, (count, 3, S, S) uint8."""
    from whysim.search.evaluation.image_files import read_image_file

    paths = sorted(SAMPLES.rglob("*.jpg"))[:count]
    return torch.stack([read_image_file(path, size).pixels for path in paths])


def test_every_explanation_decomposes_its_similarity_into_pairs_of_cells(branch, pictures) -> None:
    explanations = PairExplainer(branch).explain(pictures[0], pictures[1:5])
    for explanation in explanations:
        correspondence = explanation.correspondence
        assert correspondence.contributions.sum() == pytest.approx(explanation.similarity, abs=1e-6)
        assert correspondence.shares().sum() == pytest.approx(1.0, abs=1e-6)
        assert correspondence.query_grid == correspondence.hit_grid == explanation.hit.factual.shape
        assert correspondence.exact


def test_a_photo_explained_against_itself_matches_each_region_to_itself() -> None:
    photo_branch = build_branch(ModelRequest(input_size=224))
    photos = sample_pixels(2, 224)
    explanation = PairExplainer(photo_branch).explain(photos[1], photos[1:2])[0]
    correspondence = explanation.correspondence
    assert correspondence.query_grid == (7, 7)
    assert np.array_equal(correspondence.query_to_hit, np.arange(49))
    assert np.array_equal(correspondence.hit_to_query, np.arange(49))
    assert all(pair.query == pair.hit for pair in correspondence.top_regions(5))


def test_contribution_maps_sum_to_zero_and_agree_with_the_grad_cam_run_on_the_rest(branch, pictures) -> None:
    query, hits = pictures[0], pictures[1:5]
    threshold = middle_threshold(branch, query, hits)
    by_contribution = PairExplainer(branch, threshold, method=CONTRIBUTION)
    fmaps = by_contribution.feature_maps(pictures[:5])
    found = by_contribution.pair_pass(fmaps[:1], fmaps[1:])
    # Relative contributions are a first-order decomposition of nothing: the cosine does not
    # change when an image's vector is scaled, so they sum to zero on each side.
    np.testing.assert_allclose(found.hit_raw.sum(dim=(1, 2)).numpy(), 0.0, atol=1e-9)
    np.testing.assert_allclose(found.query_raw.sum(dim=(1, 2)).numpy(), 0.0, atol=1e-9)
    contribution = by_contribution.explain(query, hits)
    grad_cam = PairExplainer(branch, threshold).explain(query, hits)
    assert [e.method for e in contribution] == [CONTRIBUTION] * 4 and grad_cam[0].method == GRAD_CAM
    for ours, theirs in zip(contribution, grad_cam):
        assert ours.similarity == pytest.approx(theirs.similarity, abs=1e-12) and ours.verdict == theirs.verdict
        np.testing.assert_array_equal(ours.correspondence.contributions, theirs.correspondence.contributions)
        assert ours.hit.factual.max() == pytest.approx(1.0, abs=1e-5) or ours.hit.counterfactual.max() > 0.99


def test_contribution_maps_of_an_image_paired_with_itself_are_empty(branch, pictures) -> None:
    explanation = PairExplainer(branch, method=CONTRIBUTION).explain(pictures[2], pictures[2:3])[0]
    assert all_maps([explanation]).max() < 1e-3


def test_whitening_is_part_of_the_explained_similarity(branch, pictures) -> None:
    dim = branch.card.dim
    rng = np.random.default_rng(0)
    whitening = Whitening(mean=rng.normal(0.02, 0.01, dim), projection=rng.normal(0, 1, (64, dim)))
    explanations = PairExplainer(branch, whitening=whitening).explain(pictures[0], pictures[1:4])
    with torch.no_grad():
        vectors = whitening.apply(branch(pictures[:4].float()).double().numpy())
    np.testing.assert_allclose([e.similarity for e in explanations], vectors[1:] @ vectors[0], atol=1e-6)
    for explanation in explanations:
        assert explanation.correspondence.similarity == pytest.approx(explanation.similarity, abs=1e-9)


def test_grad_cam_at_the_previous_stage_is_twice_as_fine(branch, pictures) -> None:
    finer = PairExplainer(branch, map_layer="previous").explain(pictures[0], pictures[1:3])
    last = PairExplainer(branch).explain(pictures[0], pictures[1:3])
    assert finer[0].hit.factual.shape == (SIZE // 16, SIZE // 16)
    assert [e.similarity for e in finer] == pytest.approx([e.similarity for e in last], abs=1e-6)  # float32 vs 64
    assert finer[0].correspondence.query_grid == (SIZE // 32, SIZE // 32)  # correspondence stays pooled-layer
    with pytest.raises(ValueError, match="only Grad-CAM"):
        PairExplainer(branch, map_layer="previous", method=CONTRIBUTION)


@pytest.mark.parametrize("pooling", ["gem", "avg"])
def test_grad_cam_through_the_pooled_vector_equals_backpropagation_to_the_feature_maps(pictures, pooling) -> None:
    pooled_branch = build_branch(ModelRequest(input_size=SIZE, pooling=pooling))
    explainer = PairExplainer(pooled_branch)
    fmaps = explainer.feature_maps(pictures[:4]).double()
    found = explainer.pair_pass(fmaps[:1], fmaps[1:])
    query_leaves = fmaps[:1].expand(3, -1, -1, -1).clone().requires_grad_(True)
    hit_leaves = fmaps[1:].clone().requires_grad_(True)
    similarity = (explainer.tail.embed_feature_maps(query_leaves) * explainer.tail.embed_feature_maps(hit_leaves)).sum(1)
    query_grads, hit_grads = torch.autograd.grad(similarity.sum(), [query_leaves, hit_leaves])
    expected_hit = torch.einsum("kc,kchw->khw", hit_grads.mean(dim=(2, 3)), fmaps[1:])
    expected_query = torch.einsum("kc,kchw->khw", query_grads.mean(dim=(2, 3)), query_leaves.detach())
    torch.testing.assert_close(found.hit_raw, expected_hit, atol=1e-12, rtol=1e-9)
    torch.testing.assert_close(found.query_raw, expected_query, atol=1e-12, rtol=1e-9)
    torch.testing.assert_close(found.similarity, similarity.detach(), atol=1e-12, rtol=0)
