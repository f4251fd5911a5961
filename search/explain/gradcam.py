"""Paired explanations for a Siamese branch: factual and counterfactual maps for query and hit,
and which region matched which (search/explain/correspondence.py), all from one batched pass.

Two map methods. "gradcam" (below) is paired Grad-CAM. "contribution" reads each position's
exact part of the similarity from the correspondence decomposition and subtracts what the
position's share of its own image would predict: a region whose share of the similarity is
larger than its share of the image pulls the pair together (evidence for similarity), a
smaller one pulls it apart (evidence against). It needs no gradient at all.

For a pair (q, h) with similarity s = <f(q), f(h)>, each image's map uses the gradient of s
with respect to *its own* target-layer activations A (never the partner's):

    w_c = mean_xy ds/dA_c          (channel weights, Grad-CAM)
    factual        = ReLU(sum_c  sign * w_c * A_c)
    counterfactual = ReLU(sum_c -sign * w_c * A_c)

where sign = +1 when the verdict is "similar" (s >= threshold) and -1 otherwise, so the
factual map always shows the evidence for the model's verdict and the counterfactual map
the evidence against it. No clamp sits between the embeddings and s, so confident pairs
keep their gradients. Maps are normalised by their maximum plus an epsilon, so an all-zero
map stays zero instead of becoming NaN.

The tail runs in float64. The gradient of a cosine vanishes like sqrt(1 - s^2) as s -> 1,
so for an image paired with itself (the first hit of a query taken from the index) float32
leaves only rounding noise, which normalisation would blow up into a random-looking map;
in float64 that noise stays ~1e-9 of a real map's peak, so both maps are (near) zero, as
the mathematics says they should be.

Batching: the backbone runs once, without gradients, over the query and the k hits; only
the tail (pooling, head, normalisation, inner product) is differentiated, with the pooled
vectors as leaves (the query's repeated once per pair): Grad-CAM needs only each channel's
mean gradient, and GeM's or average pooling's derivative is closed-form (pooling_slope); an
earlier map layer or another pooling backpropagates to the map layer's activations instead.
Because s of pair i depends only on pair i's leaves, one backward pass over sum_i s_i yields
every pair's own gradients — the same values full backpropagation through the backbone
would give.

When the index whitens its vectors (whysim.indexer.model.whitening), s is the cosine of the whitened
vectors, the score that ranked the hit, and the tail differentiates through the whitening too.
The verdict comes from a VerdictJudge (the collection-normalised score against the collection's
rule, whysim.indexer.verdicts) when there is a collection, else from a cosine cut (the model card's).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from whysim.indexer.model.branch import SiameseBranch
from whysim.indexer.model.pooling import AveragePool, GeMPool
from whysim.indexer.model.whitening import Whitening
from whysim.indexer.verdicts import COSINE_SPREAD, Verdict, VerdictJudge, match_strength
from whysim.search.explain.correspondence import Correspondence, PositionTerms, pair_correspondences, position_terms

MAP_EPSILON = 1e-7
GRAD_CAM = "gradcam"
CONTRIBUTION = "contribution"
METHODS = (GRAD_CAM, CONTRIBUTION)
DEFAULT_METHOD = GRAD_CAM
MAP_LAYERS = ("last", "previous")
SIMILAR = "similar"
DISSIMILAR = "dissimilar"


@dataclass(frozen=True)
class SideMaps:
    """One image's maps at the map layer's resolution (h, w), values in [0, 1]."""

    factual: np.ndarray
    counterfactual: np.ndarray


@dataclass(frozen=True)
class PairExplanation:
    similarity: float
    verdict: str
    threshold: float
    query: SideMaps
    hit: SideMaps
    correspondence: Correspondence
    method: str = GRAD_CAM
    verdict_score: float = 0.0  # what the cut applies to: the collection-normalised score, or the cosine
    rule: dict[str, object] | None = None  # the rule that made the verdict (VerdictRule.to_dict() or a cosine cut)
    match: float = 0.5  # the match strength, 0..1 (>= 0.5 exactly when the verdict is similar)


def cosine_rule(threshold: float) -> dict[str, object]:
    """The rule used without a collection to judge against: the model card's cosine cut."""
    return {"kind": "cosine", "cut": threshold, "fitted": False, "normalisation": "cosine", "spread": COSINE_SPREAD,
            "description": "similar when the cosine similarity of the two images reaches the model's own cut "
                           "(no indexed collection to judge against)"}


def _normalise(cams: torch.Tensor) -> torch.Tensor:
    peak = cams.flatten(1).amax(dim=1).view(-1, 1, 1)
    return cams / (peak + MAP_EPSILON)


def float64_tail(branch: SiameseBranch, features: nn.Sequential | None = None) -> SiameseBranch:
    """A float64 copy of the branch's tail (pooling, head, normalisation), without its backbone;
    `features` (the backbone's layers after an earlier map layer) run first when given."""
    rest = copy.deepcopy(features) if features is not None else nn.Sequential()
    tail = SiameseBranch(branch.card, rest, copy.deepcopy(branch.pooling), copy.deepcopy(branch.head))
    return tail.to(device=branch.input_mean.device, dtype=torch.float64).eval()


def previous_stage_layer(branch: SiameseBranch) -> int:
    """Index of the last backbone layer whose output has more rows than the target layer's
    (for Lite0 at 224: the 14x14 stage before the last 7x7 one)."""
    with torch.no_grad():
        probe = branch.normalize_input(torch.zeros(1, 3, branch.input_size, branch.input_size,
                                                   device=branch.input_mean.device))
        heights = []
        for layer in branch.features:
            probe = layer(probe)
            heights.append(probe.shape[2])
    finer = [index for index, height in enumerate(heights) if height > heights[-1]]
    if not finer:
        raise ValueError("the backbone has no layer finer than its last")
    return finer[-1]


@dataclass(frozen=True)
class PairPass:
    """What one batched pass yields for k pairs: similarities, raw signed maps (positive =
    evidence for similarity) of query and hits, and their correspondences."""

    similarity: torch.Tensor  # (k,)
    query_raw: torch.Tensor  # (k, h, w)
    hit_raw: torch.Tensor  # (k, h, w)
    correspondences: list[Correspondence]
    query_vector: torch.Tensor  # (1, d) the final (whitened, unit) vector the similarity is of
    hit_vectors: torch.Tensor  # (k, d)


def _final_vectors(query: PositionTerms, hits: PositionTerms) -> tuple[torch.Tensor, torch.Tensor]:
    """The unit final vectors whose cosine is the similarity: the terms sum to them up to the
    whitening's scale (position_terms), so nothing needs embedding again for the verdict."""
    return F.normalize(query.vectors, dim=1, eps=1e-12), F.normalize(hits.vectors, dim=1, eps=1e-12)


def _grad_cam(activations: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """sum_c w_c A_c with w_c the spatial mean of the gradient: (k, h, w)."""
    return torch.einsum("kc,kchw->khw", grads.mean(dim=(2, 3)), activations)


def _relative_contributions(terms: torch.Tensor, own: torch.Tensor, partner: torch.Tensor,
                            similarity: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Per position: its exact contribution to the similarity minus the similarity times its
    share of its own image's vector, <t_i, partner_unit - s own_unit> / |own|: (k, h, w).

    Sums to zero over positions; it is the first-order change of the cosine when position i is
    removed (gradient x input at the pooled layer), so its positive part is evidence for the
    similarity and its negative part evidence against it.
    """
    own_norm = own.norm(dim=1, keepdim=True).clamp(min=1e-300)
    own_unit, partner_unit = own / own_norm, partner / partner.norm(dim=1, keepdim=True).clamp(min=1e-300)
    direction = (partner_unit - similarity.view(-1, 1) * own_unit) / own_norm
    return torch.einsum("knd,kd->kn", terms, direction).view(-1, *grid)


SLOPED_POOLINGS = (GeMPool, AveragePool)


def pooling_slope(pooling: nn.Module, fmaps: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
    """(B, C): the spatial mean of d pooled_c / d a_ic, so that Grad-CAM's channel weight
    mean_i ds/da_ic is ds/du_c times this. GeM: (1/N) a^(p-1) u^(1-p) where a exceeds the clamp."""
    count = fmaps.shape[2] * fmaps.shape[3]
    if isinstance(pooling, AveragePool):
        return torch.full_like(pooled, 1.0 / count)
    p = pooling.p.detach().to(fmaps.dtype)
    unclamped = (fmaps > pooling.eps).to(fmaps.dtype)
    local = (fmaps.clamp(min=pooling.eps).pow(p - 1.0) * unclamped).mean(dim=(2, 3))
    return local * pooled.pow(1.0 - p) / count


class PairExplainer:
    """Explains (query, hit) pairs for one branch; stateless apart from the model.

    `method` chooses the maps: "gradcam" (channel weights = spatial mean of the gradient, at
    the map layer) or "contribution" (each position's exact share of the similarity relative to
    its share of its own image, at the pooled layer; see search/explain/correspondence.py). `map_layer`
    "previous" moves Grad-CAM to the backbone's previous, twice finer stage. Whichever the
    method, every explanation carries the pair's region-to-region correspondence.

    The branch is switched to channels_last (as the indexer's Embedder does): on CPU that
    makes its forward pass markedly faster, and results do not depend on the layout.
    """

    def __init__(self, branch: SiameseBranch, threshold: float | None = None,
                 whitening: Whitening | None = None, method: str = DEFAULT_METHOD,
                 map_layer: str = "last") -> None:
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}")
        if map_layer not in MAP_LAYERS:
            raise ValueError(f"map layer must be one of {', '.join(MAP_LAYERS)}")
        if map_layer != "last" and method != GRAD_CAM:
            raise ValueError("only Grad-CAM maps can come from an earlier layer")
        self.branch = branch.eval().to(memory_format=torch.channels_last)
        self.whitening = whitening
        self.method = method
        self.map_layer = map_layer
        self.split = len(branch.features) if map_layer == "last" else previous_stage_layer(branch) + 1
        self.tail = float64_tail(branch, branch.features[self.split:] if map_layer != "last" else None)
        self.threshold = float(branch.card.threshold if threshold is None else threshold)

    @property
    def device(self) -> torch.device:
        return self.branch.input_mean.device

    @torch.no_grad()
    def feature_maps(self, pixels: torch.Tensor) -> torch.Tensor:
        """Activations at the map layer of uint8 images (B, 3, S, S)."""
        batch = pixels.to(self.device).contiguous(memory_format=torch.channels_last)
        return self.branch.features[:self.split](self.branch.normalize_input(batch)).float()

    def explain(self, query_pixels: torch.Tensor, hit_pixels: torch.Tensor, whitening: Whitening | None = None,
                judge: VerdictJudge | None = None) -> list[PairExplanation]:
        """Maps and correspondence for each (query, hit_i) pair from one batched forward and one
        backward pass. `query_pixels` is (3, S, S) or (1, 3, S, S); `hit_pixels` is (k, 3, S, S); uint8.
        `whitening` and `judge` are the served index's (None: this explainer's whitening, and the
        model card's cosine cut).
        """
        if query_pixels.dim() == 3:
            query_pixels = query_pixels.unsqueeze(0)
        if hit_pixels.dim() != 4 or hit_pixels.shape[0] == 0:
            raise ValueError("need at least one hit image of shape (k, 3, S, S)")
        fmaps = self.feature_maps(torch.cat([query_pixels, hit_pixels]))
        explainer = self
        if whitening is not None and whitening is not self.whitening:
            explainer = copy.copy(self)  # the same model, another collection's transform
            explainer.whitening = whitening
        return explainer.explain_feature_maps(fmaps[:1], fmaps[1:], judge)

    def _embed(self, fmaps: torch.Tensor) -> torch.Tensor:
        vectors = self.tail.embed_feature_maps(fmaps)
        return self.whitening.torch_apply(vectors) if self.whitening is not None else vectors

    def pair_pass(self, query_fmap: torch.Tensor, hit_fmaps: torch.Tensor,
                  collection_mean: np.ndarray | None = None) -> PairPass:
        """The part of `explain` after the map layer, from its activations (1, C, h, w) and (k, C, h', w');
        `collection_mean` (the searched collection's mean final vector) ranks the correspondence's regions.

        Grad-CAM differentiates the float64 tail with the map-layer activations as leaves, the
        query's repeated once per pair: s of pair i depends only on pair i's leaves, so one
        backward pass over sum_i s_i yields every pair's own gradients.
        """
        if self.method == GRAD_CAM and len(self.tail.features) == 0 and isinstance(self.tail.pooling, SLOPED_POOLINGS):
            return self._pooled_grad_cam_pass(query_fmap, hit_fmaps, collection_mean)
        count = hit_fmaps.shape[0]
        query_leaves = query_fmap.detach().to(torch.float64).expand(count, -1, -1, -1).clone()
        hit_leaves = hit_fmaps.detach().to(torch.float64).clone()
        gradients = self.method == GRAD_CAM
        with torch.enable_grad() if gradients else torch.no_grad():
            query_leaves.requires_grad_(gradients)
            hit_leaves.requires_grad_(gradients)
            query_final, hit_final = self.tail.features(query_leaves), self.tail.features(hit_leaves)
            similarity = (self._embed(query_final) * self._embed(hit_final)).sum(dim=1)
            if gradients:
                query_grads, hit_grads = torch.autograd.grad(similarity.sum(), [query_leaves, hit_leaves])
        similarity = similarity.detach()
        query_terms = position_terms(self.tail.pooling, self.tail.head, query_final[:1].detach(), self.whitening)
        hit_terms = position_terms(self.tail.pooling, self.tail.head, hit_final.detach(), self.whitening)
        correspondences = pair_correspondences(query_terms, hit_terms, collection_mean)
        if gradients:
            query_raw = _grad_cam(query_leaves.detach(), query_grads)
            hit_raw = _grad_cam(hit_leaves.detach(), hit_grads)
        else:
            query_vector, hit_vectors = query_terms.vectors.expand(count, -1), hit_terms.vectors
            query_raw = _relative_contributions(query_terms.terms.expand(count, -1, -1), query_vector, hit_vectors,
                                                similarity, query_terms.grid)
            hit_raw = _relative_contributions(hit_terms.terms, hit_vectors, query_vector, similarity, hit_terms.grid)
        return PairPass(similarity, query_raw, hit_raw, correspondences, *_final_vectors(query_terms, hit_terms))

    def _pooled_grad_cam_pass(self, query_fmap: torch.Tensor, hit_fmaps: torch.Tensor,
                              collection_mean: np.ndarray | None) -> PairPass:
        """Grad-CAM at the pooled layer with the pooled vectors as leaves: the same gradients,
        since Grad-CAM needs only each channel's mean gradient and GeM's / average pooling's
        derivative is known in closed form (pooling_slope); the backward pass then runs over
        vectors instead of feature maps."""
        count = hit_fmaps.shape[0]
        query_maps, hit_maps = query_fmap.detach().to(torch.float64), hit_fmaps.detach().to(torch.float64)
        with torch.no_grad():
            query_pooled, hit_pooled = self.tail.pooling(query_maps), self.tail.pooling(hit_maps)
        query_leaves = query_pooled.expand(count, -1).clone().requires_grad_(True)
        hit_leaves = hit_pooled.clone().requires_grad_(True)
        with torch.enable_grad():
            similarity = (self._embed_pooled(query_leaves) * self._embed_pooled(hit_leaves)).sum(dim=1)
            query_grads, hit_grads = torch.autograd.grad(similarity.sum(), [query_leaves, hit_leaves])
        similarity = similarity.detach()
        query_weights = query_grads * pooling_slope(self.tail.pooling, query_maps, query_pooled)
        hit_weights = hit_grads * pooling_slope(self.tail.pooling, hit_maps, hit_pooled)
        query_terms = position_terms(self.tail.pooling, self.tail.head, query_maps, self.whitening)
        hit_terms = position_terms(self.tail.pooling, self.tail.head, hit_maps, self.whitening)
        return PairPass(similarity, torch.einsum("kc,chw->khw", query_weights, query_maps[0]),
                        torch.einsum("kc,kchw->khw", hit_weights, hit_maps),
                        pair_correspondences(query_terms, hit_terms, collection_mean),
                        *_final_vectors(query_terms, hit_terms))

    def _embed_pooled(self, pooled: torch.Tensor) -> torch.Tensor:
        vectors = F.normalize(self.tail.head(pooled), dim=-1, eps=1e-12)
        return self.whitening.torch_apply(vectors) if self.whitening is not None else vectors

    def verdicts(self, found: PairPass, judge: VerdictJudge | None) -> tuple[torch.Tensor, list[Verdict], float,
                                                                             dict[str, object]]:
        """(sign per pair, the verdicts, the cut, the rule): the one place verdicts are made."""
        similarity = found.similarity
        if judge is None:
            verdicts = [Verdict(s >= self.threshold, s, s, match_strength(s, self.threshold, COSINE_SPREAD))
                        for s in map(float, similarity)]
            cut, rule = self.threshold, cosine_rule(self.threshold)
        else:
            verdicts = judge.judge(found.query_vector.float().cpu().numpy(), found.hit_vectors.float().cpu().numpy(),
                                   similarity.cpu().numpy())
            cut, rule = judge.rule.cut, judge.rule.to_dict()
        sign = torch.tensor([1.0 if v.similar else -1.0 for v in verdicts], dtype=similarity.dtype,
                            device=similarity.device)
        return sign, verdicts, cut, rule

    def explain_feature_maps(self, query_fmap: torch.Tensor, hit_fmaps: torch.Tensor,
                             judge: VerdictJudge | None = None) -> list[PairExplanation]:
        found = self.pair_pass(query_fmap, hit_fmaps, judge.cohort.mean_vector if judge is not None else None)
        sign, verdicts, cut, rule = self.verdicts(found, judge)
        query_factual, query_counter = _side_maps(found.query_raw, sign)
        hit_factual, hit_counter = _side_maps(found.hit_raw, sign)
        return [
            PairExplanation(
                similarity=float(found.similarity[i]),
                verdict=SIMILAR if sign[i] > 0 else DISSIMILAR,
                threshold=cut,
                query=SideMaps(query_factual[i].cpu().numpy(), query_counter[i].cpu().numpy()),
                hit=SideMaps(hit_factual[i].cpu().numpy(), hit_counter[i].cpu().numpy()),
                correspondence=found.correspondences[i],
                method=self.method,
                verdict_score=verdicts[i].score,
                rule=rule,
                match=verdicts[i].match,
            )
            for i in range(len(found.correspondences))
        ]


def _side_maps(raw: torch.Tensor, sign: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(factual, counterfactual) maps, each (k, h, w) float32 in [0, 1], from raw maps whose
    positive part is evidence for similarity: factual is the evidence for the verdict."""
    signed = raw * sign.view(-1, 1, 1).to(raw.dtype)
    return _normalise(F.relu(signed)).float(), _normalise(F.relu(-signed)).float()


def upsample_map(cam: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear upsampling of a (h, w) map to (height, width), renormalised to [0, 1]."""
    tensor = torch.from_numpy(np.ascontiguousarray(cam, dtype=np.float32))[None, None]
    resized = F.interpolate(tensor, size=(height, width), mode="bilinear", align_corners=False)[0, 0]
    resized = resized.clamp(min=0)
    return (resized / (resized.max() + MAP_EPSILON)).numpy()
