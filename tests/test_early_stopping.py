"""Early stopping runs the right way: it stops when validation ROC-AUC stops rising and
keeps the best epoch, not the last."""
from __future__ import annotations

import pytest

from whysim.indexer.training.early_stopping import EarlyStopping


def run(scores: list[float], patience: int) -> EarlyStopping:
    stopper = EarlyStopping(patience)
    for epoch, score in enumerate(scores):
        stopper.update(score, epoch, lambda epoch=epoch: f"weights of epoch {epoch}")
        if stopper.should_stop:
            break
    return stopper


def test_stops_after_patience_epochs_without_a_rise() -> None:
    stopper = run([0.60, 0.70, 0.72, 0.71, 0.69, 0.75], patience=2)
    assert stopper.should_stop
    assert stopper.best_epoch == 2 and stopper.best_state == "weights of epoch 2"
    assert stopper.best_score == pytest.approx(0.72)


def test_keeps_going_while_rising() -> None:
    stopper = run([0.5, 0.6, 0.7, 0.8, 0.9], patience=1)
    assert not stopper.should_stop and stopper.best_epoch == 4


def test_a_falling_score_is_never_an_improvement() -> None:
    stopper = run([0.9, 0.8, 0.7, 0.6], patience=3)
    assert stopper.should_stop and stopper.best_epoch == 0


def test_equal_score_is_not_an_improvement() -> None:
    stopper = run([0.8, 0.8], patience=1)
    assert stopper.should_stop and stopper.best_epoch == 0
