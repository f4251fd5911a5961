"""A collection-fitted whitening applied after the branch's L2-normalised output.

    y = normalize((x - mean) @ projection.T)

This is the interface the explainer is written against (the fitting lives with the indexer's
whitening work); `mean` is (d,) and `projection` (d_out, d).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Whitening:
    mean: np.ndarray  # (d,)
    projection: np.ndarray  # (d_out, d)

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        """Whitened, L2-normalised copies of (B, d) vectors."""
        projected = (np.asarray(vectors, dtype=np.float64) - self.mean) @ self.projection.T
        norms = np.linalg.norm(projected, axis=1, keepdims=True)
        return (projected / np.maximum(norms, 1e-12)).astype(np.asarray(vectors).dtype, copy=False)

    def torch_apply(self, vectors: torch.Tensor) -> torch.Tensor:
        """The same on a tensor, differentiable, in the tensor's dtype and device."""
        mean = torch.as_tensor(self.mean, dtype=vectors.dtype, device=vectors.device)
        projection = torch.as_tensor(self.projection, dtype=vectors.dtype, device=vectors.device)
        return F.normalize((vectors - mean) @ projection.T, dim=-1, eps=1e-12)
