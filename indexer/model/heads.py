"""Projection heads: map pooled backbone features to the (usually smaller) embedding space."""
from __future__ import annotations

from torch import nn

HEADS = ("linear", "mlp")


def build_head(kind: str, in_dim: int, out_dim: int) -> nn.Module:
    """`linear` is one matrix; `mlp` adds a hidden layer of `in_dim` units with a ReLU."""
    if kind == "linear":
        return nn.Linear(in_dim, out_dim)
    if kind == "mlp":
        return nn.Sequential(nn.Linear(in_dim, in_dim), nn.ReLU(inplace=True), nn.Linear(in_dim, out_dim))
    raise ValueError(f"unknown head {kind!r}; choose one of {', '.join(HEADS)}")
