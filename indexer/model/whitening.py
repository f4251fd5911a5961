"""PCA whitening with shrinkage, fitted on a collection's own vectors (no labels).

Instance-retrieval systems whiten their descriptors (Radenović et al., "Fine-tuning CNN Image
Retrieval with No Human Annotation", TPAMI 2018): directions in which every photo of a
collection varies a lot (lighting, "a bedroom", "a flower") carry little information about
*which* photo it is, so they are scaled down; rare directions are scaled up. Full whitening
(power 1/2 of the inverse covariance) over-amplifies noise in a collection of a few hundred
photos, so each eigenvalue is shrunk towards the mean eigenvalue first:

    y = normalise(P (x - mean)),  P = diag((lambda + shrinkage * mean(lambda)) ** -power) V^T

P keeps every dimension (it is square and invertible), so the L2-normalised branch vector x can
be recovered from y exactly (`invert`): a refit needs no re-embedding. The transform is affine
followed by L2 normalisation, so explanations differentiate through it and the similarity
still decomposes into pairs of positions (search/explain/gradcam.py).
Choices of power and shrinkage: docs/models-and-training.md "Default model" (tests/benchmarks/study_defaults.py).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from whysim.indexer.sampling import sample_rows

if TYPE_CHECKING:  # torch is imported where a tensor is whitened: FAISS-only readers never load it
    import torch

# Measured on rooms, the instance-level set (docs/models-and-training.md "Default model"): see study_defaults.py.
DEFAULT_POWER = 0.5
DEFAULT_SHRINKAGE = 10.0
# Fewer vectors than this give too noisy a covariance to rely on; whysim indexes them raw. At 50
# (a sample of rooms) whitening already lifted same-room Recall@1 from 0.92 to 0.98.
MIN_VECTORS = 50
# The covariance is estimated from at most this many vectors (a seeded sample): enough for a
# stable estimate of 1280 dimensions, and a fit then costs seconds, not minutes, at a million.
MAX_FIT_VECTORS = 50_000
FIT_SEED = 0


@dataclass(frozen=True, eq=False)
class Whitening:
    mean: np.ndarray  # (d,) float32: the collection's mean branch vector
    projection: np.ndarray  # (d, d) float32: rows are scaled principal directions (orthogonal)

    @property
    def dim(self) -> int:
        return int(self.mean.shape[0])

    def digest(self) -> str:
        data = hashlib.sha256(np.ascontiguousarray(self.mean, dtype=np.float32).tobytes())
        data.update(np.ascontiguousarray(self.projection, dtype=np.float32).tobytes())
        return data.hexdigest()[:16]

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        """Whitened, L2-normalised float32 vectors (n, d) of L2-normalised branch vectors."""
        matrix = np.asarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        projected = (matrix - self.mean) @ self.projection.T
        norms = np.linalg.norm(projected, axis=1, keepdims=True)
        return (projected / np.maximum(norms, 1e-12)).astype(np.float32)

    def torch_apply(self, vectors: torch.Tensor) -> torch.Tensor:
        """`apply` for a tensor, differentiable, in the tensor's dtype and device."""
        import torch
        import torch.nn.functional as F

        mean = torch.as_tensor(self.mean, dtype=vectors.dtype, device=vectors.device)
        projection = torch.as_tensor(self.projection, dtype=vectors.dtype, device=vectors.device)
        return F.normalize((vectors - mean) @ projection.T, dim=-1, eps=1e-12)

    def invert(self, whitened: np.ndarray) -> np.ndarray:
        """The unit branch vectors x that `apply` maps to `whitened`.

        apply(x) = P(x - m)/|P(x - m)|, so x = m + t * P^-1 y for the one t > 0 with |x| = 1
        (|m| < 1, being a mean of unit vectors, makes the root unique and positive). P's rows are
        orthogonal (scaled eigenvectors), so P^-1 = P^T diag(1 / |row|^2): no matrix inversion.
        """
        y = np.asarray(whitened, dtype=np.float64).reshape(-1, self.dim)
        projection = self.projection.astype(np.float64)
        direction = (y / (projection * projection).sum(axis=1)) @ projection
        mean = self.mean.astype(np.float64)
        a = (direction * direction).sum(axis=1)
        b = 2.0 * direction @ mean
        c = float(mean @ mean) - 1.0
        t = (-b + np.sqrt(np.maximum(b * b - 4.0 * a * c, 0.0))) / (2.0 * np.maximum(a, 1e-300))
        restored = mean + t[:, None] * direction
        restored /= np.maximum(np.linalg.norm(restored, axis=1, keepdims=True), 1e-12)
        return restored.astype(np.float32)


def fit_whitening(vectors: np.ndarray, power: float = DEFAULT_POWER, shrinkage: float = DEFAULT_SHRINKAGE,
                  max_vectors: int = MAX_FIT_VECTORS, seed: int = FIT_SEED) -> Whitening:
    """Fits the transform on L2-normalised branch vectors (n, d), n >= 2."""
    matrix = np.asarray(vectors, dtype=np.float32)
    if matrix.ndim != 2 or len(matrix) < 2:
        raise ValueError(f"whitening needs at least two vectors of shape (n, d), got {matrix.shape}")
    if power < 0 or shrinkage < 0:
        raise ValueError("whitening power and shrinkage must be non-negative")
    if len(matrix) > max_vectors:
        matrix = matrix[sample_rows(len(matrix), max_vectors, seed)]
    sample = matrix.astype(np.float64)
    mean = sample.mean(axis=0)
    centred = sample - mean
    covariance = centred.T @ centred / len(sample)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    eigenvalues = np.clip(eigenvalues, 0.0, None)
    floor = shrinkage * eigenvalues.mean()
    if floor <= 0:  # all vectors equal, or no shrinkage on a rank-deficient sample
        floor = max(float(eigenvalues.max()), 1.0) * 1e-6
    scale = (eigenvalues + floor) ** -power
    scale /= scale.max()  # the overall scale is irrelevant after normalisation; keep numbers tame
    projection = (eigenvectors * scale).T
    return Whitening(mean.astype(np.float32), np.ascontiguousarray(projection, dtype=np.float32))

