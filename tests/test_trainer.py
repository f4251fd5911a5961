"""The training loop on real (tiny) models: what is trained, what stays frozen, which epoch is kept."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from whysim.indexer.evaluation.retrieval_metrics import retrieval_metrics
from whysim.indexer.model.loading import ModelRequest, build_branch
from whysim.indexer.training.collection import scan_labelled
from whysim.indexer.training.objectives import PairObjective, SupConObjective
from whysim.indexer.training.sources import CachedFeatures, ImageFiles
from whysim.indexer.training.trainable import TrainableBranch
from whysim.indexer.training.trainer import LoopSettings, Trainer, embed_all, validation_metrics, warmup_cosine


def labelled_files(root: Path) -> tuple[list[Path], np.ndarray]:
    collection = scan_labelled(root, progress=False)
    classes = sorted(set(collection.labels))
    return ([root / image.path for image in collection.images],
            np.array([classes.index(label) for label in collection.labels]))


def test_image_step_trains_the_tail_only(make_collection) -> None:
    paths, labels = labelled_files(make_collection({"blobs": 4, "stripes": 4}))
    model = TrainableBranch(build_branch(ModelRequest(input_size=64, head_dim=8)), trainable_stages=1)
    source = ImageFiles(paths, 64, workers=0)
    objective = PairObjective(labels, batch_size=16, margin=1.0, seed=0)
    trainer = Trainer(model, objective, source, source, labels, LoopSettings(lr=1e-2, progress=False))
    before = {name: tensor.clone() for name, tensor in model.branch.state_dict().items()}
    batch = objective.batches(1)[0]
    inputs = next(source.inputs([batch.items], True, np.random.default_rng(0)))
    assert inputs.shape == (16, 3, 64, 64) and inputs.dtype == torch.uint8
    optimizer = torch.optim.SGD([p for p in model.branch.parameters() if p.requires_grad], lr=0.1)
    trainer.train_step(optimizer, batch, inputs)
    after = model.branch.state_dict()
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    last = f"features.{len(model.branch.features) - 1}."
    assert "head.weight" in changed and any(name.startswith(last) for name in changed)
    assert all(name.startswith((last, "head.")) for name in changed), changed
    assert not any("running_mean" in name for name in changed)  # BatchNorm statistics stay frozen


def test_run_keeps_the_best_epoch(make_collection) -> None:
    paths, labels = labelled_files(make_collection({"blobs": 6, "stripes": 6, "blobs_b": 6}))
    model = TrainableBranch(build_branch(ModelRequest(input_size=64, head_dim=16)), trainable_stages=0)
    pixels = next(ImageFiles(paths, 64, 0).inputs([np.arange(len(paths))], False, np.random.default_rng(0)))
    maps = model.trunk_maps(pixels).numpy()[:, None].astype(np.float16)  # one cached view per image
    cached = CachedFeatures(maps, np.arange(len(paths)))
    objective = SupConObjective(labels, batch_size=12, images_per_class=4, temperature=0.1, seed=0)
    # a learning rate far too high: later epochs get worse, and the best one must be restored
    settings = LoopSettings(epochs=6, patience=2, lr=3.0, warmup_epochs=0, progress=False)
    result = Trainer(model, objective, cached, cached, labels, settings).run()
    assert len(result.history) == result.epochs_run + 1
    best = result.history[result.best_epoch]
    assert best["pair_roc_auc"] == max(row["pair_roc_auc"] for row in result.history)
    restored = validation_metrics(embed_all(model, cached), labels)
    assert restored["pair_roc_auc"] == pytest.approx(best["pair_roc_auc"])
    np.testing.assert_allclose(result.validation_vectors, embed_all(model, cached))
    if result.stopped_early:
        assert result.epochs_run - result.best_epoch == settings.patience
    assert retrieval_metrics(result.validation_vectors, labels)["map_at_10"] == pytest.approx(best["map_at_10"])


def test_warmup_then_cosine() -> None:
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([parameter], lr=1.0)
    schedule = warmup_cosine(optimizer, warmup_steps=2, total_steps=6)
    rates = []
    for _ in range(6):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert rates[:3] == pytest.approx([0.5, 1.0, 1.0])
    assert rates[2] > rates[3] > rates[4] > rates[5] > 0
