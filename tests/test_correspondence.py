"""The pair-of-positions decomposition: contributions sum to the cosine for every pooling, head and
whitening; shares sum to 1; an image paired with itself matches each region to itself."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from whysim.indexer.model.branch import SiameseBranch
from whysim.indexer.model.card import ModelCard
from whysim.indexer.model.heads import build_head
from whysim.indexer.model.pooling import build_pooling
from whysim.indexer.model.whitening import Whitening
from whysim.search.explain.correspondence import (
    PositionTerms,
    Region,
    cell_box,
    pair_correspondences,
    position_terms,
    region_window,
    window_contributions,
)

CHANNELS, GRID = 24, (4, 5)


def tail(pooling: str, head: str | None, out_dim: int = 16) -> SiameseBranch:
    torch.manual_seed(7)
    built_head = build_head(head, CHANNELS, out_dim) if head else None
    return SiameseBranch(ModelCard(), nn.Sequential(), build_pooling(pooling), built_head).double().eval()


def activations(count: int, seed: int) -> torch.Tensor:
    """ReLU6-like activations, (count, C, h, w) float64, with exact zeros as a real backbone has."""
    generator = torch.Generator().manual_seed(seed)
    raw = torch.randn(count, CHANNELS, *GRID, generator=generator, dtype=torch.float64) * 2
    return raw.clamp(0, 6)


def random_whitening(dim: int, out_dim: int, seed: int = 3) -> Whitening:
    rng = np.random.default_rng(seed)
    return Whitening(mean=rng.normal(0.1, 0.05, dim), projection=rng.normal(0, 1, (out_dim, dim)))


def cosines(branch: SiameseBranch, query: torch.Tensor, hits: torch.Tensor,
            whitening: Whitening | None) -> np.ndarray:
    with torch.no_grad():
        vectors = branch.embed_feature_maps(torch.cat([query, hits]))
        if whitening is not None:
            vectors = whitening.torch_apply(vectors)
    return (vectors[1:] @ vectors[0]).numpy()


CASES = [(pooling, head, whitened) for pooling in ("gem", "avg", "max") for head in (None, "linear")
         for whitened in (False, True)]


@pytest.mark.parametrize("pooling, head, whitened", CASES)
def test_contributions_sum_to_the_cosine_exactly(pooling: str, head: str | None, whitened: bool) -> None:
    branch = tail(pooling, head)
    dim = 16 if head else CHANNELS
    whitening = random_whitening(dim, 12) if whitened else None
    query, hits = activations(1, 0), activations(4, 1)
    query_terms = position_terms(branch.pooling, branch.head, query, whitening)
    hit_terms = position_terms(branch.pooling, branch.head, hits, whitening)
    found = pair_correspondences(query_terms, hit_terms)
    expected = cosines(branch, query, hits, whitening)
    sums = np.array([c.contributions.sum() for c in found])
    np.testing.assert_allclose(sums, expected, atol=1e-9, rtol=0)
    assert all(c.exact and c.remainder == 0.0 for c in found)
    for correspondence in found:
        assert correspondence.contributions.shape == (GRID[0] * GRID[1],) * 2
        assert correspondence.shares().sum() == pytest.approx(1.0, abs=1e-9)


def test_terms_sum_to_the_network_output_vector() -> None:
    branch = tail("gem", "linear")
    whitening = random_whitening(16, 10)
    fmaps = activations(3, 5)
    terms = position_terms(branch.pooling, branch.head, fmaps, whitening)
    with torch.no_grad():
        projected = (branch.embed_feature_maps(fmaps) - torch.from_numpy(whitening.mean)) @ torch.from_numpy(
            whitening.projection).T
    np.testing.assert_allclose(terms.vectors.numpy(), projected.numpy(), atol=1e-12)
    assert terms.grid == GRID and terms.terms.shape == (3, GRID[0] * GRID[1], 10)


def test_a_non_linear_head_is_linearised_reports_its_remainder_and_still_sums() -> None:
    branch = tail("gem", "mlp")
    query, hits = activations(1, 2), activations(3, 3)
    query_terms = position_terms(branch.pooling, branch.head, query)
    found = pair_correspondences(query_terms, position_terms(branch.pooling, branch.head, hits))
    np.testing.assert_allclose([c.contributions.sum() for c in found], cosines(branch, query, hits, None),
                               atol=1e-9, rtol=0)
    assert not any(c.exact for c in found)
    # A random MLP has biases, so some of each vector is the (spread) remainder, but not all of it.
    assert all(0.0 < c.remainder < 1.0 for c in found)
    # A ReLU MLP is linear where its ReLU pattern holds, so the remainder is exactly the bias that
    # the active units let through: W2 diag(active) b1 + b2.
    first, second = branch.head[0], branch.head[2]
    with torch.no_grad():
        pooled = branch.pooling(query)[0]
        active = (first(pooled) > 0).double()
        bias = second.weight @ (active * first.bias) + second.bias
        expected = float(bias.norm() / branch.head(pooled).norm())
    assert float(query_terms.remainder[0]) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("with_collection", [False, True])
def test_an_image_paired_with_itself_matches_every_region_to_itself(with_collection: bool) -> None:
    branch = tail("gem", "linear")
    fmap = activations(1, 9)
    terms = position_terms(branch.pooling, branch.head, fmap, random_whitening(16, 12))
    mean = np.random.default_rng(4).normal(0, 0.2, 12) if with_collection else None
    (itself,) = pair_correspondences(terms, terms, mean)
    cells = np.arange(GRID[0] * GRID[1])
    assert np.array_equal(itself.query_to_hit, cells) and np.array_equal(itself.hit_to_query, cells)
    assert itself.similarity == pytest.approx(1.0, abs=1e-12)
    top = itself.top_regions(5, window=2)
    assert len(top) >= 2 and [pair.query for pair in top] == [pair.hit for pair in top]
    # Hit regions come out ranked by what they add beyond the collection, largest first.
    scores = [itself.hit_distinctive[pair.hit.cells(GRID)].sum() for pair in top]
    assert scores == sorted(scores, reverse=True)


def unit_terms(rows: list[list[float]], grid: tuple[int, int]) -> PositionTerms:
    terms = torch.tensor([rows], dtype=torch.float64)
    return PositionTerms(terms, grid, True, torch.zeros(1, dtype=torch.float64))


def test_the_collection_mean_ranks_first_the_region_that_is_not_generic() -> None:
    """Hit cell 0 is what every photo of the collection has (along the mean), cell 1 what this
    query has and the collection does not: raw contributions rank cell 0 first, the collection's
    mean ranks cell 1 first."""
    query = unit_terms([[0.9, 0.0, 0.0], [0.0, 0.4, 0.1]], (1, 2))
    hit = unit_terms([[0.8, 0.0, 0.0], [0.0, 0.3, 0.0]], (1, 2))
    mean = np.array([0.85, 0.0, 0.0])  # the first axis is what the collection's photos share
    (raw,) = pair_correspondences(query, hit)
    (centred,) = pair_correspondences(query, hit, mean)
    assert raw.top_regions(1, window=1)[0].hit.column == 0
    assert centred.top_regions(1, window=1)[0].hit.column == 1
    assert centred.top_regions(1, window=1)[0].query.column == 1  # the query cell pointing its way
    np.testing.assert_allclose(raw.hit_distinctive, raw.contributions.sum(axis=0), atol=1e-12)
    # The distinctive parts sum to the cosine of the two vectors' differences from the mean.
    unit = [(t.vectors[0] / t.norms[0]).numpy() for t in (query, hit)]
    assert centred.hit_distinctive.sum() == pytest.approx(float((unit[0] - mean) @ (unit[1] - mean)), abs=1e-12)
    assert np.allclose(raw.contributions, centred.contributions)  # shares do not change, only the order


def test_window_contributions_sum_every_pair_of_regions() -> None:
    rng = np.random.default_rng(5)
    query_grid, hit_grid = (4, 5), (3, 6)
    contributions = rng.normal(size=(20, 18))
    sums = window_contributions(contributions, query_grid, hit_grid, 2)
    assert sums.shape == (3, 4, 2, 5)
    for qr, qc, hr, hc in [(0, 0, 0, 0), (2, 3, 1, 4), (1, 2, 0, 3)]:
        query = Region(qr, qc, 2).cells(query_grid)
        hit = Region(hr, hc, 2).cells(hit_grid)
        assert sums[qr, qc, hr, hc] == pytest.approx(contributions[np.ix_(query, hit)].sum(), abs=1e-12)
    assert window_contributions(contributions, query_grid, hit_grid, 1) == pytest.approx(
        contributions.reshape(4, 5, 3, 6))


def test_top_regions_are_disjoint_on_both_sides_and_ranked() -> None:
    branch = tail("gem", None)
    query = position_terms(branch.pooling, branch.head, activations(1, 11))
    (found,) = pair_correspondences(query, position_terms(branch.pooling, branch.head, activations(1, 12)))
    top = found.top_regions(100, window=2)
    assert 1 <= len(top) <= 4  # at most four disjoint 2x2 squares fit a 4x5 grid
    for side in ("query", "hit"):
        cells = [cell for pair in top for cell in getattr(pair, side).cells(GRID)]
        assert len(cells) == len(set(cells))
    columns = window_contributions(found.contributions.sum(axis=0).reshape(1, -1), (1, 1), GRID, 2)[0, 0]
    scores = [columns[pair.hit.row, pair.hit.column] for pair in top]
    assert scores == sorted(scores, reverse=True) and scores[0] == pytest.approx(columns.max())
    sums = window_contributions(found.contributions, GRID, GRID, 2)
    assert all(pair.contribution == pytest.approx(sums[pair.query.row, pair.query.column, pair.hit.row,
                                                       pair.hit.column]) for pair in top)
    assert all(pair.share == pytest.approx(pair.contribution / found.similarity) for pair in top)
    singles = found.top_regions(100, window=1)
    assert len(singles) == GRID[0] * GRID[1]  # one cell each: every cell is used once on each side


def test_regions_are_a_seventh_of_the_grid_side() -> None:
    assert region_window((7, 7), (7, 7)) == 1
    assert region_window((14, 14), (14, 14)) == 2
    assert region_window((20, 20), (14, 14)) == 2
    assert Region(1, 2, 2).box((4, 5), 500, 400) == [200, 100, 400, 300]


def test_cell_boxes_tile_the_original_image() -> None:
    grid, width, height = (7, 7), 1440, 960
    boxes = [cell_box(cell, grid, width, height) for cell in range(49)]
    assert boxes[0] == [0, 0, 206, 137] and boxes[-1] == [1234, 823, 1440, 960]
    area = sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in boxes)
    assert area == width * height
    assert cell_box(9, (2, 5), 100, 50) == [80, 25, 100, 50]
