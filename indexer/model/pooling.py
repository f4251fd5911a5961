"""Global pooling of a feature map into one vector per image."""
from __future__ import annotations

import torch
from torch import nn

from whysim.indexer.model.card import POOLINGS


class AveragePool(nn.Module):
    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        return fmap.mean(dim=(2, 3))


class GeMPool(nn.Module):
    """Generalised mean pooling (Radenović et al.): p=1 is average, large p tends to max.

    Activations are clamped at `eps` before the power; with ReLU-style backbones this only
    touches exact zeros, so gradients still reach every positive activation.
    """

    def __init__(self, p: float = 3.0, eps: float = 1e-6, learnable: bool = False) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.tensor(float(p)), requires_grad=learnable)
        self.eps = eps

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        p = self.p.to(fmap.dtype)
        return fmap.clamp(min=self.eps).pow(p).mean(dim=(2, 3)).pow(1.0 / p)


class MaxPool(nn.Module):
    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        return fmap.amax(dim=(2, 3))




def build_pooling(name: str, gem_p: float = 3.0) -> nn.Module:
    if name == "avg":
        return AveragePool()
    if name == "gem":
        return GeMPool(gem_p)
    if name == "max":
        return MaxPool()
    raise ValueError(f"unknown pooling {name!r}; choose one of {', '.join(POOLINGS)}")
