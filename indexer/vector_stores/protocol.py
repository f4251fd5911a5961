"""The contract between the indexer/search code and a vector store, whatever engine holds it."""
from __future__ import annotations

from typing import Protocol

import numpy as np

from whysim.indexer.model.whitening import Whitening


class VectorStore(Protocol):
    """Unit vectors under catalog ids; inner-product search. FAISS and Milvus implement it."""

    kind: str  # flat (exact), hnsw or ivfpq: see indexer/vectors.py
    whitening: Whitening | None  # the transform its vectors went through; None: the branch's own

    @property
    def dim(self) -> int: ...

    def __len__(self) -> int: ...

    def ids(self) -> np.ndarray: ...

    def vectors(self) -> np.ndarray:
        """Every stored vector, in the order of `ids()`."""
        ...

    def add(self, ids: np.ndarray | list[int], vectors: np.ndarray) -> None: ...

    def remove(self, ids: np.ndarray | list[int]) -> int: ...

    def reconstruct(self, image_id: int) -> np.ndarray | None: ...

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by inner product: (scores, ids), each (n, k); missing slots have id -1."""
        ...

    def converted(self, kind: str) -> VectorStore:
        """The same vectors in an index of another kind (may be this object, changed in place)."""
        ...

    def compacted(self, kind: str | None = None) -> VectorStore:
        """The same vectors in a freshly built index (after many removals)."""
        ...

    def rewhitened(self, whitening: Whitening | None) -> VectorStore:
        """The same images under another whitening (None: the branch's own vectors), in a new
        store that the location saves whole, transform and vectors together."""
        ...

    def branch_vectors(self, limit: int | None = None, seed: int = 0) -> np.ndarray:
        """Stored vectors mapped back to the branch's own: all, or a seeded sample of at most `limit`."""
        ...


class VectorLocation(Protocol):
    """Where one data directory's vectors live, and how writers save and readers notice them."""

    description: str  # for messages: a path or a Milvus URI and collection
    kinds: tuple[str, ...]  # the index kinds this engine can build

    def exists(self) -> bool: ...

    def load(self) -> VectorStore:
        """The stored vectors; raises RuntimeError/ValueError/OSError when they are unreadable."""
        ...

    def empty(self, dim: int, kind: str = "flat") -> VectorStore:
        """A new, empty store that replaces what is there once saved."""
        ...

    def save(self, store: VectorStore) -> None:
        """Makes `store` durable and visible to readers as a new generation (whole, never half)."""
        ...

    def stamp(self) -> object | None:
        """Changes whenever a new generation is saved; None while there is nothing stored."""
        ...

    def clean_up(self) -> None:
        """Removes what a killed save left behind (only a writer holding the lock may call it)."""
        ...

    def close(self) -> None: ...
