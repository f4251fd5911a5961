"""Metric-learning losses on L2-normalised embeddings.

- ContrastiveLoss: the paper's pair loss. With d the Euclidean distance between the two
  embeddings (in [0, 2] for unit vectors; d^2 = 2 - 2 cos), a pair of the same class costs
  d^2 and a pair of different classes costs max(0, margin - d)^2. The default margin 1.0
  asks negatives to be at least distance 1 apart (cosine <= 0.5). Scores are never
  clamped, so every pair inside the margin keeps its gradient.
- SupConLoss: supervised contrastive loss (Khosla et al., NeurIPS 2020, L_out): each
  item of a class-balanced batch is pulled towards all its positives and pushed from all
  other items at once, a softmax over cosine similarities / temperature. Many positives
  and negatives per step make it the stronger option.
"""
from __future__ import annotations

import torch
from torch import nn

DEFAULT_MARGIN = 1.0
DEFAULT_TEMPERATURE = 0.1


class ContrastiveLoss(nn.Module):
    def __init__(self, margin: float = DEFAULT_MARGIN) -> None:
        super().__init__()
        if margin <= 0:
            raise ValueError(f"margin must be positive, got {margin}")
        self.margin = margin

    def forward(self, left: torch.Tensor, right: torch.Tensor, same: torch.Tensor) -> torch.Tensor:
        squared = (left - right).pow(2).sum(dim=-1)
        # sqrt only where needed (negatives); its gradient is infinite at exactly zero
        distance = squared.clamp_min(1e-12).sqrt()
        negative = torch.relu(self.margin - distance).pow(2)
        return torch.where(same, squared, negative).mean()


class SupConLoss(nn.Module):
    def __init__(self, temperature: float = DEFAULT_TEMPERATURE) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        self.temperature = temperature

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        n = len(embeddings)
        logits = embeddings @ embeddings.T / self.temperature
        self_mask = torch.eye(n, dtype=torch.bool, device=embeddings.device)
        logits = logits.masked_fill(self_mask, float("-inf"))
        log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
        positives = (labels[:, None] == labels[None, :]) & ~self_mask
        counts = positives.sum(dim=1)
        anchors = counts > 0
        if not anchors.any():
            raise ValueError("SupCon needs at least one pair of items with the same label in the batch")
        summed = log_prob.masked_fill(~positives, 0.0).sum(dim=1)
        return -(summed[anchors] / counts[anchors]).mean()
