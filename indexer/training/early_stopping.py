"""Early stopping on a score where higher is better (validation ROC-AUC).

Training stops once the score has not risen for `patience` epochs, and the caller
restores the weights of the best epoch, not the last one.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any


class EarlyStopping:
    def __init__(self, patience: int, min_delta: float = 0.0) -> None:
        if patience < 1:
            raise ValueError(f"patience must be at least 1 epoch, got {patience}")
        self.patience = patience
        self.min_delta = min_delta
        self.best_score = -math.inf
        self.best_epoch: int | None = None
        self.best_state: Any = None
        self.epochs_without_improvement = 0

    def update(self, score: float, epoch: int, snapshot: Callable[[], Any]) -> bool:
        """Records an epoch's score; takes a snapshot of the weights when it is the best so far."""
        if math.isnan(score):
            raise ValueError(f"validation score of epoch {epoch} is NaN")
        improved = score > self.best_score + self.min_delta
        if improved:
            self.best_score, self.best_epoch, self.best_state = score, epoch, snapshot()
            self.epochs_without_improvement = 0
        else:
            self.epochs_without_improvement += 1
        return improved

    @property
    def should_stop(self) -> bool:
        return self.epochs_without_improvement >= self.patience
