"""The training loop: AdamW, warm-up + cosine schedule, early stopping on validation ROC-AUC.

Validation embeds the validation images without augmentation after every epoch (and once
before the first), scores the fixed verification pairs and stops when their ROC-AUC has
not risen for `patience` epochs; the best epoch's weights are restored at the end.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
from tqdm import tqdm

from whysim.indexer.evaluation.retrieval_metrics import retrieval_metrics
from whysim.indexer.evaluation.verification import verification_metrics
from whysim.indexer.runtime.torch_session import autocast_dtype, autocast_for
from whysim.indexer.training.early_stopping import EarlyStopping
from whysim.indexer.training.objectives import Batch
from whysim.indexer.training.pairs import epoch_rng
from whysim.indexer.training.sources import InputSource, sequential_batches
from whysim.indexer.training.trainable import TrainableBranch

MONITORED = "pair_roc_auc"


class Objective(Protocol):
    def batches(self, epoch: int) -> list[Batch]: ...

    def loss(self, embeddings: torch.Tensor, batch: Batch) -> torch.Tensor: ...


@dataclass(frozen=True)
class LoopSettings:
    epochs: int = 30
    patience: int = 5
    lr: float = 1e-3
    backbone_lr_scale: float = 0.1
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    seed: int = 0
    progress: bool = True


@dataclass
class LoopResult:
    best_epoch: int
    best_score: float
    epochs_run: int
    stopped_early: bool
    interrupted: bool
    seconds: float
    validation_vectors: np.ndarray
    history: list[dict[str, float]] = field(default_factory=list)


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up from 0, then cosine decay to 0 at `total_steps`."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def build_optimizer(model: TrainableBranch, settings: LoopSettings) -> torch.optim.AdamW:
    """AdamW; no weight decay on biases and norm parameters; the backbone at a lower rate."""
    groups = []
    for params, lr in ((model.head_parameters(), settings.lr),
                       (model.backbone_parameters(), settings.lr * settings.backbone_lr_scale)):
        decay = [p for p in params if p.ndim > 1]
        no_decay = [p for p in params if p.ndim <= 1]
        groups += [{"params": decay, "lr": lr, "weight_decay": settings.weight_decay},
                   {"params": no_decay, "lr": lr, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]])


@torch.no_grad()
def embed_all(model: TrainableBranch, source: InputSource) -> np.ndarray:
    chunks = []
    with autocast_for(model.device):
        for inputs in source.inputs(sequential_batches(len(source)), False, np.random.default_rng(0)):
            chunks.append(source.embed(model, inputs).float().cpu().numpy())
    return np.concatenate(chunks)


def validation_metrics(vectors: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    metrics = verification_metrics(vectors, labels)
    retrieval = retrieval_metrics(vectors, labels, ks=(1, 10))
    return {MONITORED: metrics[MONITORED], "map_at_10": retrieval["map_at_10"], "p_at_1": retrieval["p_at_1"]}


class Trainer:
    def __init__(self, model: TrainableBranch, objective: Objective, source: InputSource,
                 validation: InputSource, validation_labels: np.ndarray, settings: LoopSettings) -> None:
        self.model, self.objective, self.source = model, objective, source
        self.validation, self.validation_labels = validation, validation_labels
        self.settings = settings
        dtype = autocast_dtype(model.device)
        self.scaler = torch.amp.GradScaler(model.device.type, enabled=dtype == torch.float16)

    def _validate(self) -> dict[str, float]:
        return validation_metrics(embed_all(self.model, self.validation), self.validation_labels)

    def train_step(self, optimizer: torch.optim.Optimizer, batch: Batch, inputs: torch.Tensor) -> float:
        """One optimisation step on one batch; returns its loss."""
        with autocast_for(self.model.device):
            embeddings = self.source.embed(self.model, inputs)
        loss = self.objective.loss(embeddings.float(), batch)
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        self.scaler.update()
        return float(loss.detach())

    def run(self) -> LoopResult:
        settings = self.settings
        started = time.perf_counter()
        torch.manual_seed(settings.seed)
        optimizer = build_optimizer(self.model, settings)
        steps_per_epoch = len(self.objective.batches(0))
        scheduler = warmup_cosine(optimizer, max(1, round(settings.warmup_epochs * steps_per_epoch)),
                                  settings.epochs * steps_per_epoch)
        stopper = EarlyStopping(settings.patience)
        history = [{"epoch": 0, **self._validate()}]
        stopper.update(history[0][MONITORED], 0, self.model.trainable_state)
        self._report(history[0], improved=True)
        interrupted = False
        epoch = 0
        try:
            for epoch in range(1, settings.epochs + 1):
                batches = self.objective.batches(epoch)
                inputs = self.source.inputs([b.items for b in batches], True, epoch_rng(settings.seed, epoch))
                total = 0.0
                with tqdm(zip(batches, inputs), total=len(batches), desc=f"epoch {epoch}/{settings.epochs}",
                          unit="step", disable=not settings.progress, dynamic_ncols=True, leave=False) as bar:
                    for count, (batch, batch_inputs) in enumerate(bar, start=1):
                        total += self.train_step(optimizer, batch, batch_inputs)
                        scheduler.step()
                        bar.set_postfix(loss=f"{total / count:.4f}")
                row = {"epoch": epoch, "loss": total / max(1, len(batches)),
                       "lr": optimizer.param_groups[0]["lr"], **self._validate()}
                history.append(row)
                improved = stopper.update(row[MONITORED], epoch, self.model.trainable_state)
                self._report(row, improved)
                if stopper.should_stop:
                    break
        except KeyboardInterrupt:
            interrupted = True
            tqdm.write(f"interrupted in epoch {epoch}: keeping the best epoch so far ({stopper.best_epoch})")
        self.model.load_trainable_state(stopper.best_state)
        assert stopper.best_epoch is not None
        return LoopResult(best_epoch=stopper.best_epoch, best_score=stopper.best_score,
                          epochs_run=history[-1]["epoch"], stopped_early=stopper.should_stop,
                          interrupted=interrupted, seconds=time.perf_counter() - started,
                          validation_vectors=embed_all(self.model, self.validation), history=history)

    def _report(self, row: dict[str, float], improved: bool) -> None:
        if not self.settings.progress:
            return
        loss = f"loss {row['loss']:.4f}, " if "loss" in row else "before training: "
        tqdm.write(f"epoch {row['epoch']:>3}: {loss}validation ROC-AUC {row[MONITORED]:.4f}, "
                   f"mAP@10 {row['map_at_10']:.4f}, P@1 {row['p_at_1']:.4f}{' *' if improved else ''}")
