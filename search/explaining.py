"""Paired Grad-CAM for a Siamese branch: factual and counterfactual maps for query and hit.

For a pair (q, h) with similarity s = <f(q), f(h)>, each image's map uses the gradient of s
with respect to *its own* target-layer activations A (never the partner's):

    w_c = mean_xy ds/dA_c          (channel weights, Grad-CAM)
    factual        = ReLU(sum_c  sign * w_c * A_c)
    counterfactual = ReLU(sum_c -sign * w_c * A_c)

where sign = +1 when the verdict is "similar" and -1 otherwise, so the
factual map always shows the evidence for the model's verdict and the counterfactual map
the evidence against it. No clamp sits between the embeddings and s, so confident pairs
keep their gradients. Maps are normalised by their maximum plus an epsilon, so an all-zero
map stays zero instead of becoming NaN.

The tail runs in float64. The gradient of a cosine vanishes like sqrt(1 - s^2) as s -> 1,
so for an image paired with itself (the first hit of a query taken from the index) float32
leaves only rounding noise, which normalisation would blow up into a random-looking map;
in float64 that noise stays ~1e-9 of a real map's peak, so both maps are (near) zero, as
the mathematics says they should be.

Batching: the backbone runs once, without gradients, over the query and the k hits; the
target-layer activations then become leaves (the query's repeated once per pair) and only
the tail (pooling, head, normalisation, inner product) is differentiated. Because s of pair
i depends only on pair i's leaves, one backward pass over sum_i s_i yields every pair's own
gradients — the same values full backpropagation through the backbone would give.

When the index whitens its vectors (indexer.model.whitening), s is the cosine of the whitened
vectors, the score that ranked the hit, and the tail differentiates through the whitening too.
The verdict comes from a VerdictJudge (the collection-normalised score against the collection's
rule, indexer.verdicts) when there is a collection, else from a cosine cut (the model card's).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from indexer.model.branch import SiameseBranch
from indexer.model.whitening import Whitening
from indexer.verdicts import VerdictJudge

MAP_EPSILON = 1e-7
SIMILAR = "similar"
DISSIMILAR = "dissimilar"


@dataclass(frozen=True)
class SideMaps:
    """One image's maps at the target layer's resolution (h, w), values in [0, 1]."""

    factual: np.ndarray
    counterfactual: np.ndarray


@dataclass(frozen=True)
class PairExplanation:
    similarity: float  # cosine of the (whitened) vectors: the score that ranks the hit
    verdict: str
    threshold: float  # the cut the verdict applied (to `verdict_score`)
    query: SideMaps
    hit: SideMaps
    verdict_score: float = 0.0  # what the cut applies to: the collection-normalised score, or the cosine
    rule: dict[str, object] | None = None  # the rule that made the verdict (VerdictRule.to_dict() or a cosine cut)


def cosine_rule(threshold: float) -> dict[str, object]:
    """The rule used without a collection to judge against: the model card's cosine cut."""
    return {"kind": "cosine", "cut": threshold, "fitted": False,
            "description": f"cosine cut {threshold:.3f} of the model card (no indexed collection to judge against)"}


def _normalise(cams: torch.Tensor) -> torch.Tensor:
    peak = cams.flatten(1).amax(dim=1).view(-1, 1, 1)
    return cams / (peak + MAP_EPSILON)


def float64_tail(branch: SiameseBranch) -> SiameseBranch:
    """A float64 copy of the branch's tail (pooling, head, normalisation), without its backbone."""
    tail = SiameseBranch(branch.card, nn.Sequential(), copy.deepcopy(branch.pooling), copy.deepcopy(branch.head))
    return tail.to(device=branch.input_mean.device, dtype=torch.float64).eval()


@dataclass(frozen=True)
class PairGradients:
    similarity: torch.Tensor  # (k,)
    query_weights: torch.Tensor  # (k, C) Grad-CAM channel weights
    hit_weights: torch.Tensor  # (k, C)
    query_vectors: torch.Tensor  # (k, d) final (whitened, normalised) vectors, detached
    hit_vectors: torch.Tensor  # (k, d)


def pair_gradients(branch: SiameseBranch, query_fmap: torch.Tensor, hit_fmaps: torch.Tensor,
                   whitening: Whitening | None = None) -> PairGradients:
    """Similarities and Grad-CAM channel weights of query and hits, from one backward pass.

    `query_fmap` is (1, C, h, w) and `hit_fmaps` (k, C, h', w'), both from `branch.feature_maps`.
    Only `branch`'s tail (and the whitening) runs, in the dtype of its buffers (float64 for a
    `float64_tail`).
    """
    count = hit_fmaps.shape[0]
    dtype = branch.input_mean.dtype
    query_leaves = query_fmap.detach().to(dtype).expand(count, -1, -1, -1).clone().requires_grad_(True)
    hit_leaves = hit_fmaps.detach().to(dtype).clone().requires_grad_(True)
    with torch.enable_grad():
        query_vectors = branch.embed_feature_maps(query_leaves)
        hit_vectors = branch.embed_feature_maps(hit_leaves)
        if whitening is not None:
            query_vectors, hit_vectors = whitening.torch_apply(query_vectors), whitening.torch_apply(hit_vectors)
        similarity = (query_vectors * hit_vectors).sum(dim=1)
        query_grads, hit_grads = torch.autograd.grad(similarity.sum(), [query_leaves, hit_leaves])
    return PairGradients(similarity.detach(), query_grads.mean(dim=(2, 3)), hit_grads.mean(dim=(2, 3)),
                         query_vectors.detach(), hit_vectors.detach())


def _side_maps(weights: torch.Tensor, activations: torch.Tensor,
               sign: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(factual, counterfactual) maps, each (k, h, w) float32 in [0, 1]."""
    signed = weights * sign.view(-1, 1).to(weights.dtype)
    raw = torch.einsum("kc,kchw->khw", signed, activations.to(weights.dtype))
    return _normalise(F.relu(raw)).float(), _normalise(F.relu(-raw)).float()


class PairExplainer:
    """Explains (query, hit) pairs for one branch; stateless apart from the model.

    The branch is switched to channels_last (as the indexer's Embedder does): on CPU that
    makes its forward pass markedly faster, and results do not depend on the layout.
    """

    def __init__(self, branch: SiameseBranch, threshold: float | None = None) -> None:
        self.branch = branch.eval().to(memory_format=torch.channels_last)
        self.tail = float64_tail(branch)
        self.threshold = float(branch.card.threshold if threshold is None else threshold)

    @property
    def device(self) -> torch.device:
        return self.branch.input_mean.device

    @torch.no_grad()
    def feature_maps(self, pixels: torch.Tensor) -> torch.Tensor:
        """Target-layer activations of uint8 images (B, 3, S, S)."""
        batch = pixels.to(self.device).contiguous(memory_format=torch.channels_last)
        return self.branch.feature_maps(batch).float()

    def explain(self, query_pixels: torch.Tensor, hit_pixels: torch.Tensor, whitening: Whitening | None = None,
                judge: VerdictJudge | None = None) -> list[PairExplanation]:
        """Maps for each (query, hit_i) pair from one batched forward and one backward pass.

        `query_pixels` is (3, S, S) or (1, 3, S, S); `hit_pixels` is (k, 3, S, S); uint8.
        `whitening` and `judge` are the served index's (None: raw vectors, cosine cut).
        """
        if query_pixels.dim() == 3:
            query_pixels = query_pixels.unsqueeze(0)
        if hit_pixels.dim() != 4 or hit_pixels.shape[0] == 0:
            raise ValueError("need at least one hit image of shape (k, 3, S, S)")
        fmaps = self.feature_maps(torch.cat([query_pixels, hit_pixels]))
        return self.explain_feature_maps(fmaps[:1], fmaps[1:], whitening, judge)

    def verdicts(self, gradients: PairGradients,
                 judge: VerdictJudge | None) -> tuple[torch.Tensor, list[float], float, dict[str, object]]:
        """(sign per pair, the score the cut applied to, the cut, the rule): the one place verdicts are made."""
        similarity = gradients.similarity
        if judge is None:
            sign = torch.where(similarity >= self.threshold, 1.0, -1.0)
            return sign, [float(s) for s in similarity], self.threshold, cosine_rule(self.threshold)
        verdicts = judge.judge(gradients.query_vectors.float().cpu().numpy(),
                               gradients.hit_vectors.float().cpu().numpy(), similarity.cpu().numpy())
        sign = torch.tensor([1.0 if v.similar else -1.0 for v in verdicts], dtype=similarity.dtype,
                            device=similarity.device)
        return sign, [v.score for v in verdicts], judge.rule.cut, judge.rule.to_dict()

    def explain_feature_maps(self, query_fmap: torch.Tensor, hit_fmaps: torch.Tensor,
                             whitening: Whitening | None = None,
                             judge: VerdictJudge | None = None) -> list[PairExplanation]:
        gradients = pair_gradients(self.tail, query_fmap, hit_fmaps, whitening)
        sign, scores, cut, rule = self.verdicts(gradients, judge)
        count = hit_fmaps.shape[0]
        query_factual, query_counter = _side_maps(gradients.query_weights, query_fmap.expand(count, -1, -1, -1), sign)
        hit_factual, hit_counter = _side_maps(gradients.hit_weights, hit_fmaps, sign)
        return [
            PairExplanation(
                similarity=float(gradients.similarity[i]),
                verdict=SIMILAR if sign[i] > 0 else DISSIMILAR,
                threshold=cut,
                query=SideMaps(query_factual[i].cpu().numpy(), query_counter[i].cpu().numpy()),
                hit=SideMaps(hit_factual[i].cpu().numpy(), hit_counter[i].cpu().numpy()),
                verdict_score=scores[i],
                rule=rule,
            )
            for i in range(count)
        ]


def upsample_map(cam: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear upsampling of a (h, w) map to (height, width), renormalised to [0, 1]."""
    tensor = torch.from_numpy(np.ascontiguousarray(cam, dtype=np.float32))[None, None]
    resized = F.interpolate(tensor, size=(height, width), mode="bilinear", align_corners=False)[0, 0]
    resized = resized.clamp(min=0)
    return (resized / (resized.max() + MAP_EPSILON)).numpy()
