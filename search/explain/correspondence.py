"""Which region of the query matched which region of the hit: the similarity of a pair as an
exact sum over pairs of positions (query cell i, hit cell j).

The branch is backbone -> pooling -> head -> L2 normalisation (-> optional whitening). For
activations a_i (position i of N, C channels) every pooling in use is a sum over positions:

    GeM:  u_c = (1/N sum_i a_ic^p)^(1/p) = sum_i w_ic,   w_ic = a_ic^p / (N u_c^(p-1))
    avg:  w_i = a_i / N                 max:  w_ic = u_c where i is channel c's argmax, else 0

(GeM is positively homogeneous of degree 1 in each channel, so by Euler's theorem this is also
sum_i a_ic du_c/da_ic). A linear head keeps it: v = W u + b = sum_i W w_i + b. Any other head is
linearised at u: v = sum_i J w_i + (v - J u), J the head's Jacobian at u; for the ReLU MLP the
remainder is the bias the active ReLUs let through, so the sum is still v. L2 normalisation
divides by the scalar |v|, and a whitening y = P (x - mean) maps the sum to sum_i P w_i / |v|
plus the constant -P mean. Each image's constants (head bias, linearisation remainder, mean)
are spread over its positions in proportion to the positions' pooled mass sum_c |w_ic|, so

    y = sum_i t_i   and   cos(q, h) = sum_{i,j} <t_i^q, t_j^h> / (|y^q| |y^h|) = sum_{i,j} C_ij

holds to rounding (float64): C is the contribution of the pair (i, j), and C / cos its share.

The region of the hit that query cell i *matches* is the hit cell whose term points the most
the same way (largest cosine of t_i^q and t_j^h): raw contributions grow with the cube of the
activations under GeM, so the strongest cell would otherwise be every cell's match. An image
paired with itself therefore matches every cell to itself.

The top matches are pairs of square regions (a few cells a side, region_window), found hit
region first. A hit region B is ranked by what it adds to the match beyond what any photo of the
collection would: with unit terms t^ = t / |y| and the collection's mean final vector mu,

    D_B = sum_{j in B} <y^q - mu, t^_j - s_j mu>,   s_j = |t_j|_1 / sum_j' |t_j'|_1

(the hit's terms centred by their mass share of the mean; they sum to y^h - mu). Deleting a
region replaces its content by something generic, and D_B is the first-order loss of that: on
broad-category collections every pair of photos shares most of its cosine through mu, so the
raw column sums of C rank the regions that every photo has. With no collection mu = 0 and D_B
is the column sum of C over B. Measured on held-out pairs (docs/studies.md, "Faithfulness of the
correspondence"). Each hit region is joined with the query region A that points the most its
way, the largest <T_A, T_B> / |T_A| for the region sums T (T_B's length times their cosine),
and the pair reports its contribution, the sum of C over A x B. For an image paired with itself
every region's partner is itself (Cauchy-Schwarz: <T_A, T_B> / |T_A| <= |T_B|, equal at A = B).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from whysim.indexer.model.pooling import AveragePool, GeMPool, MaxPool
from whysim.indexer.model.whitening import Whitening

DEFAULT_MATCHES = 5
MAX_MATCHES = 100
_TINY = 1e-300


@dataclass(frozen=True)
class PositionTerms:
    """Per-image terms t (B, N, d) whose sum over positions is the final vector y (B, d)."""

    terms: torch.Tensor
    grid: tuple[int, int]
    exact: bool  # False when a non-linear head was linearised
    remainder: torch.Tensor  # (B,) |linearisation remainder| / |head output| (0 when exact)

    @property
    def vectors(self) -> torch.Tensor:
        return self.terms.sum(dim=1)

    @property
    def norms(self) -> torch.Tensor:
        return self.vectors.norm(dim=1)


def pooled_terms(pooling: nn.Module, fmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-position parts w (B, N, C) of the pooled vector u (B, C): u = w.sum(1)."""
    batch, channels = fmaps.shape[:2]
    flat = fmaps.flatten(2).transpose(1, 2)  # (B, N, C)
    count = flat.shape[1]
    if isinstance(pooling, GeMPool):
        p = pooling.p.detach().to(fmaps.dtype)
        powered = flat.clamp(min=pooling.eps).pow(p)
        pooled = powered.mean(dim=1).pow(1.0 / p)
        return powered / (count * pooled.pow(p - 1.0)).unsqueeze(1), pooled
    if isinstance(pooling, AveragePool):
        return flat / count, flat.mean(dim=1)
    if isinstance(pooling, MaxPool):
        pooled, where = flat.max(dim=1)
        parts = torch.zeros_like(flat)
        parts.scatter_(1, where.unsqueeze(1), pooled.unsqueeze(1))
        return parts, pooled
    raise ValueError(f"no position decomposition for pooling {type(pooling).__name__}")


def _linearised_head(head: nn.Module, parts: torch.Tensor,
                     pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(J w_i (B, N, d), remainder v - J u (B, d), v (B, d)) for a head without a closed form."""
    with torch.enable_grad():
        primal = pooled.detach().requires_grad_(True)
        output = head(primal)
        # Reverse mode, one vector-Jacobian product per output unit would be d passes; instead
        # differentiate <output, z> for a dummy z, then differentiate that gradient along each
        # position's part (the double-backward trick for Jacobian-vector products).
        dummy = torch.zeros_like(output, requires_grad=True)
        (vjp,) = torch.autograd.grad(output, primal, dummy, create_graph=True)
        positions = parts.shape[1]
        columns = [torch.autograd.grad(vjp, dummy, parts[:, i], retain_graph=i < positions - 1)[0]
                   for i in range(positions)]
    linear = torch.stack(columns, dim=1).detach()
    output = output.detach()
    return linear, output - linear.sum(dim=1), output


def _mass_shares(parts: torch.Tensor) -> torch.Tensor:
    """(B, N): each position's share of the pooled mass sum_c |w_ic|; uniform when all are zero."""
    mass = parts.abs().sum(dim=2)
    total = mass.sum(dim=1, keepdim=True)
    uniform = torch.full_like(mass, 1.0 / mass.shape[1])
    return torch.where(total > 0, mass / total.clamp(min=_TINY), uniform)


@torch.no_grad()
def position_terms(pooling: nn.Module, head: nn.Module, fmaps: torch.Tensor,
                   whitening: Whitening | None = None) -> PositionTerms:
    """The terms of the final vector (after head, L2 normalisation and whitening) of each image.

    Run it in float64: sums then match the network's own output to ~1e-12.
    """
    parts, pooled = pooled_terms(pooling, fmaps)
    exact = True
    remainder_share = torch.zeros(parts.shape[0], dtype=parts.dtype, device=parts.device)
    if isinstance(head, nn.Identity):
        terms, bias = parts, torch.zeros_like(pooled)
    elif isinstance(head, nn.Linear):
        weight = head.weight.to(parts.dtype)
        terms = parts @ weight.T
        bias = (head.bias.to(parts.dtype) if head.bias is not None else torch.zeros(weight.shape[0], dtype=parts.dtype,
                                                                                   device=parts.device))
        bias = bias.expand(parts.shape[0], -1)
    else:
        terms, bias, output = _linearised_head(head, parts, pooled)
        exact = False
        remainder_share = bias.norm(dim=1) / output.norm(dim=1).clamp(min=_TINY)
    scale = (terms.sum(dim=1) + bias).norm(dim=1).clamp(min=1e-12).view(-1, 1)  # F.normalize's eps
    terms, bias = terms / scale.unsqueeze(2), bias / scale
    if whitening is not None:
        projection = torch.as_tensor(whitening.projection, dtype=terms.dtype, device=terms.device)
        mean = torch.as_tensor(whitening.mean, dtype=terms.dtype, device=terms.device)
        terms, bias = terms @ projection.T, (bias - mean) @ projection.T
    terms = terms + _mass_shares(parts).unsqueeze(2) * bias.unsqueeze(1)
    return PositionTerms(terms, (fmaps.shape[2], fmaps.shape[3]), exact, remainder_share)


@dataclass(frozen=True)
class Region:
    """A square of side x side cells whose top-left cell is (row, column) of a feature grid."""

    row: int
    column: int
    side: int

    def cells(self, grid: tuple[int, int]) -> list[int]:
        """The row-major indices of its cells."""
        columns = grid[1]
        return [(self.row + r) * columns + self.column + c for r in range(self.side) for c in range(self.side)]

    def box(self, grid: tuple[int, int], width: int, height: int) -> list[int]:
        """[x0, y0, x1, y1] in an image of width x height pixels."""
        first = cell_box(self.row * grid[1] + self.column, grid, width, height)
        last = cell_box((self.row + self.side - 1) * grid[1] + self.column + self.side - 1, grid, width, height)
        return [first[0], first[1], last[2], last[3]]


@dataclass(frozen=True)
class RegionPair:
    query: Region
    hit: Region
    contribution: float  # the summed contributions of all cell pairs between the two regions
    share: float  # contribution / similarity
    distinctive: float  # what the hit region adds beyond the collection (D_B): the order of the pairs
    evidence_share: float  # of all the evidence on its side (for or against the match): 0..1

    @property
    def supports(self) -> bool:
        """Whether the pair adds to the similarity (evidence for the match) or takes from it."""
        return self.contribution >= 0


@dataclass(frozen=True)
class Correspondence:
    """One pair's decomposition: contributions (Nq, Nh) sum to the similarity."""

    contributions: np.ndarray
    query_grid: tuple[int, int]
    hit_grid: tuple[int, int]
    query_to_hit: np.ndarray  # (Nq,) the hit cell each query cell matches
    hit_to_query: np.ndarray  # (Nh,) the query cell each hit cell matches
    exact: bool
    remainder: float  # largest linearisation remainder's share of a head output (0 when exact)
    hit_distinctive: np.ndarray  # (Nh,) <y^q - mu, t^_j - s_j mu>: what each hit cell adds beyond the collection
    query_gram: np.ndarray  # (Nq, Nq) <t^_i, t^_i'> of the query's unit terms (shared by all its hits)

    @property
    def similarity(self) -> float:
        return float(self.contributions.sum())

    def shares(self) -> np.ndarray:
        """Each pair's share of the similarity; they sum to 1 (undefined at similarity 0)."""
        return self.contributions / self.similarity

    def evidence_share(self, contribution: float) -> float:
        """A contribution's share of all the evidence on its side: of the sum of every positive cell
        pair (evidence for the match) when it is positive, else of the sum of every negative one.
        Always within 0..1, unlike the share of the similarity, which a small or negative similarity
        blows up (a region pair of a non-matching pair can be "-138% of the similarity")."""
        side = self.contributions[self.contributions > 0] if contribution >= 0 else self.contributions[self.contributions < 0]
        total = float(np.abs(side).sum())
        return min(abs(contribution) / total, 1.0) if total > 0 else 0.0

    def top_regions(self, count: int = DEFAULT_MATCHES, window: int | None = None) -> list[RegionPair]:
        """Up to `count` pairs of square regions (window x window cells, default region_window),
        hit regions ranked by what they add beyond the collection (hit_distinctive), each with the
        query region pointing the most its way; no two pairs share a query cell or a hit cell
        (greedy: each pick rules out the regions overlapping it on either side)."""
        side = min(window or region_window(self.query_grid, self.hit_grid), *self.query_grid, *self.hit_grid)
        sums = window_contributions(self.contributions, self.query_grid, self.hit_grid, side)
        hit_scores = window_contributions(self.hit_distinctive.reshape(1, -1), (1, 1), self.hit_grid, side)[0, 0]
        query_lengths = np.sqrt(np.clip(_diagonal_windows(self.query_gram, self.query_grid, side), 0.0, None))
        query_free = np.ones(sums.shape[:2], dtype=bool)
        hit_free = np.ones(sums.shape[2:], dtype=bool)
        similarity = self.similarity
        found: list[RegionPair] = []
        while len(found) < count and query_free.any() and hit_free.any():
            hr, hc = np.unravel_index(int(np.argmax(np.where(hit_free, hit_scores, -np.inf))), hit_free.shape)
            pointing = sums[:, :, hr, hc] / np.maximum(query_lengths, _TINY)
            qr, qc = np.unravel_index(int(np.argmax(np.where(query_free, pointing, -np.inf))), query_free.shape)
            contribution = float(sums[qr, qc, hr, hc])
            found.append(RegionPair(Region(int(qr), int(qc), side), Region(int(hr), int(hc), side), contribution,
                                    contribution / similarity if similarity != 0 else 0.0,
                                    float(hit_scores[hr, hc]), self.evidence_share(contribution)))
            _rule_out(query_free, qr, qc, side)
            _rule_out(hit_free, hr, hc, side)
        return found


def region_window(query_grid: tuple[int, int], hit_grid: tuple[int, int]) -> int:
    """Cells per side of a matched region: about a seventh of the shorter grid side (one cell at
    224 px, 2x2 cells of Lite0's 14x14 grid at 448), so a region keeps the same share of the
    photo whatever the input size. One cell of 196 is too small a part of a photo for its
    deletion to move the score measurably more than a random cell's (docs/studies.md, "Faithfulness of the
    correspondence")."""
    return max(1, round(min(*query_grid, *hit_grid) / 7))


def window_contributions(contributions: np.ndarray, query_grid: tuple[int, int], hit_grid: tuple[int, int],
                         window: int) -> np.ndarray:
    """(Rq-w+1, Cq-w+1, Rh-w+1, Ch-w+1): the summed contribution of every pair of w x w regions,
    from running sums along each of the four grid axes."""
    sums = contributions.reshape(*query_grid, *hit_grid).astype(np.float64)
    for axis in range(4):
        width = min(window, sums.shape[axis])  # a window wider than the grid: the whole side
        running = np.cumsum(sums, axis=axis)
        zero = np.zeros_like(np.take(running, [0], axis=axis))
        running = np.concatenate([zero, running], axis=axis)
        upper = np.take(running, np.arange(width, running.shape[axis]), axis=axis)
        lower = np.take(running, np.arange(0, running.shape[axis] - width), axis=axis)
        sums = upper - lower
    return sums


def _diagonal_windows(gram: np.ndarray, grid: tuple[int, int], window: int) -> np.ndarray:
    """(R-w+1, C-w+1): |T_A|^2 of every w x w region A, from the Gram matrix of its image's terms."""
    sums = window_contributions(gram, grid, grid, window)
    rows, columns = sums.shape[:2]
    return np.diagonal(sums.reshape(rows * columns, rows * columns)).reshape(rows, columns)


def _rule_out(free: np.ndarray, row: int, column: int, side: int) -> None:
    """Marks every region overlapping the one at (row, column) as taken."""
    free[max(0, row - side + 1):row + side, max(0, column - side + 1):column + side] = False


def _unit_rows(terms: torch.Tensor) -> torch.Tensor:
    return terms / terms.norm(dim=-1, keepdim=True).clamp(min=_TINY)


def _distinctive(query_unit: torch.Tensor, hit_units: torch.Tensor, mean: torch.Tensor | None) -> torch.Tensor:
    """(k, Nh) <y^q - mu, t^_j - s_j mu> of unit terms (query (Nq, d), hits (k, Nh, d))."""
    query_vector = query_unit.sum(dim=0)
    if mean is None:
        return torch.einsum("d,kjd->kj", query_vector, hit_units)
    mass = hit_units.abs().sum(dim=2)
    shares = mass / mass.sum(dim=1, keepdim=True).clamp(min=_TINY)
    excess = query_vector - mean  # <excess, t^_j - s_j mu> without forming the centred terms
    return torch.einsum("d,kjd->kj", excess, hit_units) - shares * torch.dot(excess, mean)


def pair_correspondences(query: PositionTerms, hits: PositionTerms,
                         collection_mean: np.ndarray | None = None) -> list[Correspondence]:
    """The correspondence of the one query (batch of 1) with each hit, all hits at once.
    `collection_mean` is the mean final vector of the collection searched (None: no collection)."""
    query_unit = query.terms[0] / query.norms[0].clamp(min=_TINY)
    hit_units = hits.terms / hits.norms.clamp(min=_TINY).view(-1, 1, 1)
    contributions = torch.einsum("id,kjd->kij", query_unit, hit_units)
    cosines = torch.einsum("id,kjd->kij", _unit_rows(query_unit), _unit_rows(hit_units))
    query_to_hit, hit_to_query = cosines.argmax(dim=2).cpu().numpy(), cosines.argmax(dim=1).cpu().numpy()
    mean = (torch.as_tensor(collection_mean, dtype=query_unit.dtype, device=query_unit.device)
            if collection_mean is not None else None)
    distinctive = _distinctive(query_unit, hit_units, mean).cpu().numpy()
    query_gram = (query_unit @ query_unit.T).cpu().numpy()
    contributions = contributions.cpu().numpy()
    return [Correspondence(contributions=contributions[index], query_grid=query.grid, hit_grid=hits.grid,
                           query_to_hit=query_to_hit[index], hit_to_query=hit_to_query[index],
                           exact=query.exact and hits.exact,
                           remainder=float(max(query.remainder[0], hits.remainder[index])),
                           hit_distinctive=distinctive[index], query_gram=query_gram)
            for index in range(hits.terms.shape[0])]


def cell_box(cell: int, grid: tuple[int, int], width: int, height: int) -> list[int]:
    """[x0, y0, x1, y1] of a grid cell in an image of width x height pixels (the model sees the
    whole image squashed to a square, so cells divide each side evenly)."""
    rows, columns = grid
    row, column = divmod(int(cell), columns)
    return [round(column * width / columns), round(row * height / rows),
            round((column + 1) * width / columns), round((row + 1) * height / rows)]


@dataclass(frozen=True)
class BoxMatch:
    """A top pair drawn on the images: boxes [x0, y0, x1, y1] in each original image's pixels."""

    rank: int
    query_box: list[int]
    hit_box: list[int]
    share: float
    contribution: float
    distinctive: float
    query_cells: list[int]
    hit_cells: list[int]
    evidence_share: float  # of all the evidence for (supports) or against the match: 0..1

    @property
    def supports(self) -> bool:
        return self.contribution >= 0

    def to_dict(self) -> dict[str, object]:
        return {"rank": self.rank, "query_box": self.query_box, "hit_box": self.hit_box,
                "share": round(self.share, 6), "contribution": round(self.contribution, 6),
                "distinctive": round(self.distinctive, 6), "query_cells": self.query_cells,
                "hit_cells": self.hit_cells, "supports": self.supports,
                "evidence_share": round(self.evidence_share, 6)}


def shares_of_the_listed(matches: list[BoxMatch]) -> list[float]:
    """Each match's part of what the listed matches on its side (for or against) carry, so each
    side's list adds up to 1, as the page lists them. A match's evidence_share is of all the
    evidence, spread over every pair of cells (38,416 at 448 px), so a few regions' parts of it
    read "0%"."""
    parts = []
    for match in matches:
        members = [other for other in matches if other.supports == match.supports]
        carried = sum(other.evidence_share for other in members)
        parts.append(match.evidence_share / carried if carried > 0 else 1 / len(members))
    return parts


def box_matches(correspondence: Correspondence, count: int, query_size: tuple[int, int],
                hit_size: tuple[int, int]) -> list[BoxMatch]:
    """The top `count` region pairs with their boxes; sizes are (width, height) of the originals."""
    query_grid, hit_grid = correspondence.query_grid, correspondence.hit_grid
    return [BoxMatch(rank, pair.query.box(query_grid, *query_size), pair.hit.box(hit_grid, *hit_size), pair.share,
                     pair.contribution, pair.distinctive, pair.query.cells(query_grid), pair.hit.cells(hit_grid),
                     pair.evidence_share)
            for rank, pair in enumerate(correspondence.top_regions(count), start=1)]


def correspondence_summary(correspondence: Correspondence, query_size: tuple[int, int],
                           hit_size: tuple[int, int]) -> dict[str, object]:
    """What a client needs to light up, for any cell of one image, the cell it matches in the other."""
    return {"query_grid": list(correspondence.query_grid), "hit_grid": list(correspondence.hit_grid),
            "query_size": list(query_size), "hit_size": list(hit_size),
            "query_to_hit": [int(cell) for cell in correspondence.query_to_hit],
            "hit_to_query": [int(cell) for cell in correspondence.hit_to_query],
            "exact": correspondence.exact, "remainder": round(correspondence.remainder, 6),
            "share_sum": round(float(correspondence.shares().sum()), 9)}
