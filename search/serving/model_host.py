"""The model an index was built with, loaded on first use and shared by searches and explanations.

All model work runs on one dedicated thread, one call at a time: on a few CPU cores concurrent
forward passes only compete for the same cores, one at a time keeps memory bounded, and torch's
OpenMP thread team then belongs to that one thread instead of being rebuilt for every request
thread of a threaded web server.

That thread (and torch's worker threads, which it starts) runs at a lower OS priority
(`MODEL_NICENESS`): requests that need no model time, such as searches by id, then take the
cores first, so a client flooding explanations cannot slow them down (issue 23), while the
model still gets every cycle they leave.

The calls waiting for that thread are bounded (`queue_size`, the running one included): when
the queue is full a call fails at once with ModelBusy (the API answers 503 with Retry-After)
instead of waiting behind an unbounded line.
"""
from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from whysim.indexer.model.branch import SiameseBranch
from whysim.indexer.model.card import ModelCard
from whysim.indexer.model.loading import load_for_card
from whysim.indexer.model.whitening import Whitening
from whysim.indexer.pipeline.embedding import Embedder, resolve_device
from whysim.indexer.runtime.choice import DEFAULT_RUNTIME
from whysim.indexer.verdicts import VerdictJudge
from whysim.search.explain.gradcam import PairExplainer, PairExplanation

T = TypeVar("T")
DEFAULT_QUEUE_SIZE = 8
AVERAGE_WEIGHT = 0.2  # of the newest call in the running average of call durations
MODEL_NICENESS = 10  # added to the model thread's nice value (Linux: per thread; 19 is the lowest priority)


def lower_thread_priority(niceness: int = MODEL_NICENESS) -> None:
    """Lowers the calling thread's scheduling priority; threads it starts later inherit it."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), os.getpriority(os.PRIO_PROCESS, 0) + niceness)
    except (AttributeError, OSError):
        pass  # not Linux, or not allowed: the model then runs at the request threads' priority


class ModelBusy(RuntimeError):
    """The model's queue is full; `retry_after_s` estimates when a place frees up."""

    def __init__(self, queue_size: int, retry_after_s: int) -> None:
        super().__init__(f"the model is busy ({queue_size} requests are already waiting for it); "
                         f"try again in {retry_after_s} s")
        self.retry_after_s = retry_after_s


class ModelHost:
    def __init__(self, models_dir: Path, device: str = "cpu", queue_size: int = DEFAULT_QUEUE_SIZE,
                 runtime: str = DEFAULT_RUNTIME, runtime_cache_dir: Path | None = None) -> None:
        if queue_size < 1:
            raise ValueError("the model queue must hold at least 1 request")
        self.models_dir = models_dir
        self.device = resolve_device(device)
        self.runtime = runtime
        self.runtime_cache_dir = runtime_cache_dir
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="whysim-model",
                                          initializer=lower_thread_priority)
        self._embedder: Embedder | None = None
        self._explainer: PairExplainer | None = None
        self._lock = threading.Lock()
        self._waiting = 0  # calls queued or running
        self._average_s = 0.3
        self.queue_size = queue_size

    def _ready(self, card: ModelCard) -> tuple[Embedder, PairExplainer]:
        """Loads (or swaps to) the branch for `card`; runs on the model thread."""
        current = self._embedder
        if current is None or current.branch.card.identity() != card.identity():
            branch: SiameseBranch = load_for_card(card, self.models_dir)
            self._embedder = Embedder(branch, self.device, self.runtime, self.runtime_cache_dir)
            self._explainer = PairExplainer(self._embedder.branch)
        assert self._embedder is not None and self._explainer is not None
        return self._embedder, self._explainer

    @property
    def loaded(self) -> bool:
        return self._embedder is not None

    @property
    def queue_depth(self) -> int:
        """Calls waiting for the model thread or running on it."""
        return self._waiting

    def run(self, work: Callable[[], T]) -> T:
        """Runs `work` on the model thread and waits for it; ModelBusy when the queue is full."""
        with self._lock:
            if self._waiting >= self.queue_size:
                raise ModelBusy(self.queue_size, max(1, math.ceil(self._waiting * self._average_s)))
            self._waiting += 1
        try:
            return self._worker.submit(self._timed, work).result()
        finally:
            with self._lock:
                self._waiting -= 1

    def _timed(self, work: Callable[[], T]) -> T:
        """Runs on the model thread; keeps the running average that Retry-After is estimated from."""
        started = time.perf_counter()
        try:
            return work()
        finally:
            self._average_s += AVERAGE_WEIGHT * (time.perf_counter() - started - self._average_s)

    def embed(self, card: ModelCard, pixels: torch.Tensor) -> np.ndarray:
        """Vectors (B, dim) of uint8 images (B, 3, S, S), exactly as the indexer computes them."""
        return self.run(lambda: self._ready(card)[0](pixels))

    def explain(self, card: ModelCard, query_pixels: torch.Tensor, hit_pixels: torch.Tensor,
                whitening: Whitening | None = None, judge: VerdictJudge | None = None) -> list[PairExplanation]:
        return self.run(lambda: self._ready(card)[1].explain(query_pixels, hit_pixels, whitening, judge))

    def close(self) -> None:
        self._worker.shutdown(wait=True)
