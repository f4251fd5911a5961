"""One `whysim train`: scan and split the collection, build the model and its inputs, train,
choose the decision threshold on validation, and write the checkpoint and the split."""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from whysim.indexer.datadir import DataDir
from whysim.indexer.evaluation.retrieval_metrics import retrieval_metrics
from whysim.indexer.evaluation.verification import verification_metrics
from whysim.indexer.model.loading import CARD_FILE, ModelRequest, build_branch, save_checkpoint
from whysim.indexer.pipeline.embedding import resolve_device
from whysim.indexer.pipeline.options import default_workers
from whysim.indexer.runtime.torch_session import autocast_for
from whysim.indexer.training.collection import LabelledCollection, scan_labelled
from whysim.indexer.training.features_cache import FeatureCache, cache_key, fill_cache
from whysim.indexer.training.objectives import PairObjective, SupConObjective
from whysim.indexer.training.sources import CachedFeatures, ImageFiles, InputSource, unreadable_files
from whysim.indexer.training.splits import SPLIT_FILE, Split, split_collection
from whysim.indexer.training.trainable import TrainableBranch
from whysim.indexer.training.trainer import LoopResult, LoopSettings, Trainer
from whysim.indexer.training.views import DEFAULT_VIEWS

HISTORY_FILE = "history.json"


@dataclass(frozen=True)
class TrainOptions:
    output: Path | None = None
    loss: str = "supcon"
    margin: float = 1.0
    temperature: float = 0.1
    batch_size: int = 64  # images per step
    images_per_class: int = 8  # K of the class-balanced batches (supcon)
    head: str = "mlp"  # beat "linear" on flowers' validation split (docs/models-and-training.md, "Training")
    head_dim: int = 256
    trainable_stages: int = 0
    cache_features: bool | None = None  # None: on CPU, off on CUDA
    views: tuple[str, ...] = DEFAULT_VIEWS
    validation_fraction: float = 0.15
    test_fraction: float = 0.15
    split_file: Path | None = None
    device: str = "auto"
    workers: int = field(default_factory=default_workers)
    loop: LoopSettings = field(default_factory=LoopSettings)

    def settings(self) -> dict[str, Any]:
        values = asdict(self)
        values.pop("output")
        values["split_file"] = str(self.split_file) if self.split_file else None
        values["views"] = list(self.views)
        values.update(values.pop("loop"))
        values.pop("progress")
        return values


@dataclass
class TrainReport:
    output: Path
    card: dict[str, Any]
    counts: dict[str, int]
    seconds: float
    cache_seconds: float
    train_seconds: float
    best_epoch: int
    epochs_run: int

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "output": str(self.output)}

    def summary(self) -> str:
        metrics = self.card["metrics"]["validation"]
        return (f"saved {self.output}: best epoch {self.best_epoch} of {self.epochs_run}, validation "
                f"ROC-AUC {metrics['pair_roc_auc']:.4f}, mAP@10 {metrics['map_at_10']:.4f}, "
                f"threshold {self.card['threshold']:.4f}; {self.train_seconds:.0f} s training "
                f"(+{self.cache_seconds:.0f} s feature cache), {self.seconds:.0f} s in all")


def default_output(datadir: DataDir, collection_root: Path) -> Path:
    return datadir.root / "runs" / f"{collection_root.resolve().name}-{time.strftime('%Y%m%d-%H%M%S')}"


def _require_pairs(name: str, collection: LabelledCollection) -> None:
    counts: dict[str, int] = {}
    for label in collection.labels:
        counts[label] = counts.get(label, 0) + 1
    if len(counts) < 2 or max(counts.values()) < 2:
        raise ValueError(f"the {name} split has {len(collection)} usable images in {len(counts)} classes; "
                         f"it needs two classes and two images of one class. Use a larger collection "
                         f"or change --validation-fraction / --test-fraction")


def _load_or_make_split(collection: LabelledCollection, options: TrainOptions) -> Split:
    if options.split_file is None:
        return split_collection(collection, options.validation_fraction, options.test_fraction, options.loop.seed)
    split = Split.load(options.split_file)
    if split.data_digest != collection.digest():
        tqdm.write(f"note: {options.split_file} was made for different contents of this collection; "
                   f"files it does not list are left out")
    return split


class TrainRun:
    def __init__(self, root: Path, datadir: DataDir, request: ModelRequest, options: TrainOptions) -> None:
        self.root, self.datadir, self.request, self.options = root, datadir, request, options
        self.progress = options.loop.progress

    def run(self) -> TrainReport:
        started = time.perf_counter()
        options = self.options
        output = (options.output or default_output(self.datadir, self.root)).expanduser().absolute()
        if (output / CARD_FILE).exists():
            raise FileExistsError(f"{output} already holds a checkpoint; choose another --output")
        collection = scan_labelled(self.root, self.progress)
        if len(collection.classes) < 2:
            raise ValueError(f"{self.root} needs at least two class folders with images "
                             f"(found {len(collection.classes)})")
        split = _load_or_make_split(collection, options)
        train, _ = collection.subset(split.of("train")).distinct()
        validation, _ = collection.subset(split.of("validation")).distinct()
        _require_pairs("training", train)  # before the long part; again once unreadable files are out
        _require_pairs("validation", validation)
        device = resolve_device(options.device)
        branch = build_branch(replace(self.request, head_dim=options.head_dim, head=options.head))
        base_card = branch.card
        model = TrainableBranch(branch, options.trainable_stages).to(device)
        cache_started = time.perf_counter()
        cached = options.cache_features if options.cache_features is not None else device.type == "cpu"
        if cached:
            source, validation_source, train, validation = self._cached_sources(model, train, validation)
        else:
            source, validation_source, train, validation = self._image_sources(train, validation)
        cache_seconds = time.perf_counter() - cache_started
        _require_pairs("training", train)
        _require_pairs("validation", validation)

        classes = {label: code for code, label in enumerate(collection.classes)}
        train_codes = np.array([classes[label] for label in train.labels], dtype=np.int64)
        validation_labels = np.asarray(validation.labels)
        if options.loss == "contrastive":
            objective: Any = PairObjective(train_codes, options.batch_size, options.margin, options.loop.seed)
        elif options.loss == "supcon":
            objective = SupConObjective(train_codes, options.batch_size, options.images_per_class,
                                        options.temperature, options.loop.seed)
        else:
            raise ValueError(f"unknown loss {options.loss!r}; choose contrastive or supcon")
        result = Trainer(model, objective, source, validation_source, validation_labels, options.loop).run()

        branch.to("cpu").to(memory_format=torch.contiguous_format)
        metrics = verification_metrics(result.validation_vectors, validation_labels)
        retrieval = retrieval_metrics(result.validation_vectors, validation_labels, ks=(1, 10))
        validation_metrics = {**{k: metrics[k] for k in ("pair_roc_auc", "pair_accuracy", "pair_f1", "pairs")},
                              "map_at_10": retrieval["map_at_10"], "p_at_1": retrieval["p_at_1"]}
        counts = {"train": len(train), "validation": len(validation), "test": len(split.of("test"))}
        branch.card = branch.card.with_updates(
            threshold=metrics["threshold"], metrics={"validation": validation_metrics},
            training=self._training_record(collection, split, counts, base_card.weights_digest, device,
                                           cached, result, cache_seconds))
        output.mkdir(parents=True, exist_ok=True)
        split.save(output / SPLIT_FILE)
        (output / HISTORY_FILE).write_text(json.dumps(result.history, indent=1) + "\n")
        save_checkpoint(branch, output)
        return TrainReport(output, branch.card.to_dict(), counts, round(time.perf_counter() - started, 2),
                           round(cache_seconds, 2), round(result.seconds, 2), result.best_epoch, result.epochs_run)

    def _training_record(self, collection: LabelledCollection, split: Split, counts: dict[str, int],
                         base_digest: str, device: torch.device, cached: bool, result: LoopResult,
                         cache_seconds: float) -> dict[str, Any]:
        return {"data_dir": str(collection.root), "data_digest": collection.digest(),
                "seed": self.options.loop.seed, "split_file": SPLIT_FILE, "split_counts": counts,
                "base_weights": self.request.weights, "base_weights_digest": base_digest,
                "settings": {**self.options.settings(), "cache_features": cached},
                "device": device.type, "best_epoch": result.best_epoch, "epochs_run": result.epochs_run,
                "stopped_early": result.stopped_early, "interrupted": result.interrupted,
                "train_seconds": round(result.seconds, 2), "cache_seconds": round(cache_seconds, 2)}

    def _cached_sources(self, model: TrainableBranch, train: LabelledCollection, validation: LabelledCollection
                        ) -> tuple[InputSource, InputSource, LabelledCollection, LabelledCollection]:
        options = self.options
        card = model.branch.card
        key = cache_key(card.backbone, model.trunk, model.cut, card.input_size, options.views)
        cache = FeatureCache(self.datadir.cache_dir / "features" / key.folder_name())

        def trunk_maps(pixels: torch.Tensor) -> torch.Tensor:
            with autocast_for(model.device):
                return model.trunk_maps(pixels)

        files = [(image.sha256, train.root / image.path) for image in (*train.images, *validation.images)]
        batch = 256 if model.device.type == "cuda" else 32
        failed = fill_cache(cache, files, trunk_maps, card.input_size, options.views, batch,
                            options.workers, self.progress)
        train, validation = (LabelledCollection(c.root, tuple(i for i in c.images if i.sha256 not in failed))
                             for c in (train, validation))
        maps = cache.reader()
        rows = [np.array([cache.row_of[i.sha256] for i in c.images], dtype=np.int64) for c in (train, validation)]
        return CachedFeatures(maps, rows[0]), CachedFeatures(maps, rows[1]), train, validation

    def _image_sources(self, train: LabelledCollection, validation: LabelledCollection
                       ) -> tuple[InputSource, InputSource, LabelledCollection, LabelledCollection]:
        size, workers = self.request.input_size, self.options.workers
        bad = unreadable_files([train.root / i.path for i in (*train.images, *validation.images)],
                               size, workers, self.progress)
        train, validation = (LabelledCollection(c.root, tuple(i for i in c.images if c.root / i.path not in bad))
                             for c in (train, validation))
        return (ImageFiles([train.root / i.path for i in train.images], size, workers),
                ImageFiles([validation.root / i.path for i in validation.images], size, workers),
                train, validation)
