"""Seeded samples of rows, one rule for every place that bounds its work by sampling (IVF-PQ
training, whitening fits, verdict cohorts, the instance-level test): sorted, so a sample keeps
the collection's order, and the same for the same count and seed."""
from __future__ import annotations

import numpy as np


def sample_rows(count: int, limit: int, seed: int = 0) -> np.ndarray:
    """Sorted positions of a seeded sample of `limit` among `count` rows; all of them when count <= limit."""
    if count <= limit:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, limit, replace=False))
