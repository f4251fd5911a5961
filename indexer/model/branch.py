"""One branch of the Siamese network: backbone -> pooling -> optional head -> L2 normalisation.

Both images of a pair go through the same branch (shared weights), so similarity is the
inner product of two branch outputs. The branch is split at its Grad-CAM target layer:
`feature_maps` runs up to it, `embed_feature_maps` runs the rest, which lets explanations
differentiate only the cheap tail.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from whysim.indexer.model.card import ModelCard
from whysim.indexer.model.fusion import fold_batchnorm


class SiameseBranch(nn.Module):
    def __init__(self, card: ModelCard, features: nn.Sequential, pooling: nn.Module,
                 head: nn.Module | None = None) -> None:
        super().__init__()
        self.card = card
        self.features = features
        self.pooling = pooling
        self.head = head if head is not None else nn.Identity()
        self.register_buffer("input_mean", torch.tensor(card.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("input_std", torch.tensor(card.std).view(1, 3, 1, 1), persistent=False)

    @property
    def target_layer_name(self) -> str:
        """Dotted module name of the layer Grad-CAM explains (the last feature map)."""
        return f"features.{len(self.features) - 1}"

    @property
    def target_layer(self) -> nn.Module:
        return self.features[-1]

    @property
    def input_size(self) -> int:
        return self.card.input_size

    def fold_batchnorm(self) -> int:
        """For inference only (embedding, explaining): folds the backbone's BatchNorm layers
        into its convolutions, about 1.3x faster on CPU for the same outputs (see
        whysim.indexer.model.fusion). Returns how many were folded; a second call folds none."""
        self.features, folded = fold_batchnorm(self.features, self.input_size)
        return folded

    def normalize_input(self, images: torch.Tensor) -> torch.Tensor:
        """Images arrive as uint8 or float in [0, 255], shape (B, 3, H, W)."""
        return (images.to(self.input_mean.dtype) - self.input_mean) / self.input_std

    def feature_maps(self, images: torch.Tensor) -> torch.Tensor:
        return self.features(self.normalize_input(images))

    def embed_feature_maps(self, fmaps: torch.Tensor) -> torch.Tensor:
        vectors = self.head(self.pooling(fmaps))
        if vectors.dtype != torch.float64:  # float64 stays: explanations differentiate the tail in it
            vectors = vectors.float()
        return F.normalize(vectors, dim=-1, eps=1e-12)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.embed_feature_maps(self.feature_maps(images))
