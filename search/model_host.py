"""The model an index was built with, loaded on first use and shared by searches and explanations.

All model work runs on one dedicated thread, one call at a time: on a few CPU cores concurrent
forward passes only compete for the same cores, one at a time keeps memory bounded, and torch's
OpenMP thread team then belongs to that one thread instead of being rebuilt for every request
thread of a threaded web server.
"""
from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from indexer.model.branch import SiameseBranch
from indexer.model.card import ModelCard
from indexer.model.loading import load_for_card
from indexer.model.whitening import Whitening
from indexer.pipeline.embedding import Embedder, resolve_device
from indexer.verdicts import VerdictJudge
from search.explaining import PairExplainer, PairExplanation

T = TypeVar("T")


class ModelHost:
    def __init__(self, models_dir: Path, device: str = "cpu") -> None:
        self.models_dir = models_dir
        self.device = resolve_device(device)
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="whysim-model")
        self._embedder: Embedder | None = None
        self._explainer: PairExplainer | None = None

    def _ready(self, card: ModelCard) -> tuple[Embedder, PairExplainer]:
        """Loads (or swaps to) the branch for `card`; runs on the model thread."""
        current = self._embedder
        if current is None or current.branch.card.identity() != card.identity():
            branch: SiameseBranch = load_for_card(card, self.models_dir)
            self._embedder = Embedder(branch, self.device)
            self._explainer = PairExplainer(self._embedder.branch)
        assert self._embedder is not None and self._explainer is not None
        return self._embedder, self._explainer

    @property
    def loaded(self) -> bool:
        return self._embedder is not None

    def _run(self, work: Callable[[], T]) -> T:
        return self._worker.submit(work).result()

    def embed(self, card: ModelCard, pixels: torch.Tensor) -> np.ndarray:
        """Vectors (B, dim) of uint8 images (B, 3, S, S), exactly as the indexer computes them."""
        return self._run(lambda: self._ready(card)[0](pixels))

    def explain(self, card: ModelCard, query_pixels: torch.Tensor, hit_pixels: torch.Tensor,
                whitening: Whitening | None = None, judge: VerdictJudge | None = None) -> list[PairExplanation]:
        return self._run(lambda: self._ready(card)[1].explain(query_pixels, hit_pixels, whitening, judge))

    def close(self) -> None:
        self._worker.shutdown(wait=True)
