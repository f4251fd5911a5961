"""Clustered, L2-normalised synthetic embeddings for the index benchmarks.

Pure Gaussian noise has no neighbourhood structure, which makes it the worst case for
approximate search and nothing like image embeddings. These vectors are drawn instead from
a mixture of many clusters living in a low-dimensional subspace, plus a shared offset and a
little full-dimensional noise, which is how CNN embeddings behave: they concentrate on a few
dozen directions (most variance in few principal components), similar images form tight
groups, and every pair has a positive cosine.

    x = normalise(offset * u + B (c_k + spread * z) * s + noise * e)

u: a fixed unit vector; B: a random orthonormal dim x latent_dim basis; s: per-direction
scales decaying as 1/j**0.6 (a long-tailed spectrum); c_k: the centre of cluster k (cluster
sizes are uneven, Zipf-like); z, e: standard normal. The defaults were matched to
EfficientNet-Lite0/GeM embeddings of the flowers photos (mean pair cosine, variance share of
the top principal components); tests/benchmarks/README.md gives both sets of figures.

Chunks are deterministic in (seed, chunk number), so a million vectors never need to be in
memory at once: any stage regenerates exactly the chunk it needs.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

QUERY_STREAM = 1 << 30  # chunk numbers for queries start here: never equal to a base chunk


@dataclass(frozen=True)
class ClusteredVectors:
    dim: int = 1280
    clusters: int = 33_000  # about 30 vectors per cluster at a million
    latent_dim: int = 256
    spread: float = 0.8
    decay: float = 0.6  # the scale of latent direction j is 1/j**decay
    offset: float = 2.6
    noise: float = 0.04
    seed: int = 0
    chunk_size: int = 50_000
    _basis: np.ndarray = field(init=False, repr=False, compare=False)
    _centres: np.ndarray = field(init=False, repr=False, compare=False)
    _weights: np.ndarray = field(init=False, repr=False, compare=False)
    _offset_dir: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        rng = np.random.default_rng([self.seed, 0xC1])
        basis, _ = np.linalg.qr(rng.standard_normal((self.dim, self.latent_dim)))
        scales = 1.0 / np.arange(1, self.latent_dim + 1) ** self.decay
        offset_dir = rng.standard_normal(self.dim)
        offset_dir /= np.linalg.norm(offset_dir)
        weights = 1.0 / np.arange(1, self.clusters + 1) ** 0.5
        object.__setattr__(self, "_basis", (basis * scales).T.astype(np.float32))  # latent x dim
        object.__setattr__(self, "_centres", rng.standard_normal((self.clusters, self.latent_dim)).astype(np.float32))
        object.__setattr__(self, "_weights", weights / weights.sum())
        object.__setattr__(self, "_offset_dir", offset_dir.astype(np.float32))

    def chunk(self, number: int, count: int | None = None) -> np.ndarray:
        """Vectors of chunk `number` (float32, unit norm); the same call gives the same vectors."""
        count = self.chunk_size if count is None else count
        rng = np.random.default_rng([self.seed, number])
        labels = rng.choice(self.clusters, size=count, p=self._weights)
        latent = self._centres[labels] + self.spread * rng.standard_normal((count, self.latent_dim), dtype=np.float32)
        vectors = latent @ self._basis
        vectors += self.offset * self._offset_dir
        vectors += self.noise * rng.standard_normal((count, self.dim), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors

    def base(self, total: int) -> Iterator[tuple[int, np.ndarray]]:
        """(first row, vectors) chunks that together make the first `total` base vectors."""
        for start in range(0, total, self.chunk_size):
            yield start, self.chunk(start // self.chunk_size, min(self.chunk_size, total - start))

    def queries(self, count: int) -> np.ndarray:
        """Fresh draws from the same distribution, never rows of the base set."""
        return self.chunk(QUERY_STREAM, count)
