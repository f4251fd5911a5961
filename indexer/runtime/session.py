"""What every runtime offers the indexer and the search service: one batch in, vectors out."""
from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # light at run time: the CLI imports RuntimeUnavailable to build --help
    import numpy as np
    import torch


class RuntimeUnavailable(RuntimeError):
    """The chosen runtime is not installed (or cannot run on the chosen device); says what to do."""


class EmbeddingSession(Protocol):
    name: str
    """The runtime: "torch", "openvino" or "onnxruntime"."""

    def run(self, pixels: torch.Tensor) -> np.ndarray:
        """uint8 images (B, 3, S, S), as decoded -> L2-normalised float32 vectors (B, D)."""
        ...
