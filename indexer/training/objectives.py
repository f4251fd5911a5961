"""Training objectives: which items form a step's batch, and the loss on their embeddings."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from whysim.indexer.training.losses import ContrastiveLoss, SupConLoss
from whysim.indexer.training.pairs import balanced_pairs, class_balanced_batches, epoch_rng

LOSSES = ("contrastive", "supcon")


@dataclass(frozen=True)
class Batch:
    items: np.ndarray  # item indices to embed, in order
    targets: torch.Tensor  # pairs: same-class flags; supcon: class codes


class PairObjective:
    """The paper's protocol: every epoch, each image gets one fresh positive and one fresh
    negative pair; pairs are shuffled into batches of `batch_size` images (half as many pairs)."""

    def __init__(self, labels: np.ndarray, batch_size: int, margin: float, seed: int) -> None:
        self.labels, self.seed = labels, seed
        self.pairs_per_batch = max(1, batch_size // 2)
        self.loss_fn = ContrastiveLoss(margin)

    def batches(self, epoch: int) -> list[Batch]:
        rng = epoch_rng(self.seed, epoch)
        pairs = balanced_pairs(self.labels, rng).shuffled(rng)
        step = self.pairs_per_batch
        return [Batch(np.concatenate([pairs.left[i:i + step], pairs.right[i:i + step]]),
                      torch.from_numpy(pairs.same[i:i + step]))
                for i in range(0, len(pairs), step)]

    def loss(self, embeddings: torch.Tensor, batch: Batch) -> torch.Tensor:
        half = len(batch.targets)
        return self.loss_fn(embeddings[:half], embeddings[half:], batch.targets.to(embeddings.device))


class SupConObjective:
    """Class-balanced batches (P classes x K images, about `batch_size` images) under SupCon."""

    def __init__(self, labels: np.ndarray, batch_size: int, images_per_class: int, temperature: float,
                 seed: int) -> None:
        self.labels, self.seed = labels, seed
        classes = max(2, len(np.unique(labels)))
        self.classes_per_batch = max(2, min(classes, batch_size // images_per_class))
        self.images_per_class = max(2, batch_size // self.classes_per_batch)
        self.loss_fn = SupConLoss(temperature)

    def batches(self, epoch: int) -> list[Batch]:
        indices = class_balanced_batches(self.labels, self.classes_per_batch, self.images_per_class,
                                         epoch_rng(self.seed, epoch))
        return [Batch(items, torch.from_numpy(self.labels[items])) for items in indices]

    def loss(self, embeddings: torch.Tensor, batch: Batch) -> torch.Tensor:
        return self.loss_fn(embeddings, batch.targets.to(embeddings.device))
