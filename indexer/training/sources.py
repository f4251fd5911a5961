"""Where a training step's inputs come from: cached features or decoded (augmented) images.

Both give the same two things: an iterator of input tensors, one per batch of item
indices, and a way to turn those inputs into embeddings with the trainable branch.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from whysim.indexer.imaging import ImageRejected
from whysim.indexer.pipeline.reading import init_reader_worker, model_pixels
from whysim.indexer.training.features_cache import CachedRows
from whysim.indexer.training.trainable import TrainableBranch
from whysim.indexer.training.views import augmented_pixels, image_augmentation, load_picture

EVAL_BATCH = 256


class InputSource(Protocol):
    def __len__(self) -> int: ...

    def inputs(self, batches: Sequence[np.ndarray], augment: bool, rng: np.random.Generator) -> Iterator[torch.Tensor]: ...

    def embed(self, model: TrainableBranch, inputs: torch.Tensor) -> torch.Tensor: ...


def sequential_batches(count: int, size: int = EVAL_BATCH) -> list[np.ndarray]:
    return [np.arange(start, min(start + size, count)) for start in range(0, count, size)]


class CachedFeatures:
    """Rows of a feature cache; augmentation picks one of the cached views per occurrence
    (view 0 is the plain image)."""

    def __init__(self, maps: np.ndarray | CachedRows, rows: np.ndarray) -> None:
        self.maps = maps  # (rows, V, C, h, w) float16, usually a FeatureCache's CachedRows
        self.rows = np.asarray(rows, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.rows)

    def inputs(self, batches: Sequence[np.ndarray], augment: bool, rng: np.random.Generator) -> Iterator[torch.Tensor]:
        views = self.maps.shape[1]
        for items in batches:
            rows = self.rows[items]
            chosen = rng.integers(0, views, size=len(rows)) if augment else np.zeros(len(rows), dtype=np.int64)
            yield torch.from_numpy(np.asarray(self.maps[rows, chosen], dtype=np.float32))

    def embed(self, model: TrainableBranch, inputs: torch.Tensor) -> torch.Tensor:
        return model.embed_maps(inputs)


class _PictureDataset(Dataset[torch.Tensor]):
    def __init__(self, paths: Sequence[Path], input_size: int, augment: bool) -> None:
        self.paths, self.input_size = list(paths), input_size
        self.transform = image_augmentation(input_size) if augment else None

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        try:
            picture = load_picture(self.paths[index], self.input_size)
        except (ImageRejected, OSError) as exc:
            raise RuntimeError(f"{self.paths[index]} became unreadable during training: {exc}") from exc
        if self.transform is not None:
            return augmented_pixels(picture, self.transform)
        return model_pixels(picture, self.input_size)


class ImageFiles:
    """Decodes the images for every batch (random crop, flip, colour jitter when augmenting);
    the frozen trunk and the tail both run on every step."""

    def __init__(self, paths: Sequence[Path], input_size: int, workers: int) -> None:
        self.paths, self.input_size, self.workers = list(paths), input_size, workers

    def __len__(self) -> int:
        return len(self.paths)

    def inputs(self, batches: Sequence[np.ndarray], augment: bool, rng: np.random.Generator) -> Iterator[torch.Tensor]:
        # Workers draw their augmentation seeds from this generator; without workers the
        # transforms use torch's global generator, which the trainer seeds.
        generator = torch.Generator().manual_seed(int(rng.integers(0, 2**62)))
        workers = min(self.workers, len(batches))
        loader = DataLoader(_PictureDataset(self.paths, self.input_size, augment),
                            batch_sampler=[items.tolist() for items in batches], num_workers=workers,
                            worker_init_fn=init_reader_worker if workers else None, generator=generator,
                            pin_memory=torch.cuda.is_available())
        yield from loader

    def embed(self, model: TrainableBranch, inputs: torch.Tensor) -> torch.Tensor:
        return model.embed_maps(model.trunk_maps(inputs))


class _ReadCheck(Dataset[str | None]):
    def __init__(self, paths: Sequence[Path], input_size: int) -> None:
        self.paths, self.input_size = list(paths), input_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> str | None:
        try:
            load_picture(self.paths[index], self.input_size)
        except (ImageRejected, OSError) as exc:
            return str(exc)
        return None


def unreadable_files(paths: Sequence[Path], input_size: int, workers: int, progress: bool) -> dict[Path, str]:
    """Decodes every file once before image-mode training; returns {path: reason} of the
    ones that fail (they are skipped with a message, never fatal)."""
    loader = DataLoader(_ReadCheck(paths, input_size), batch_size=64, num_workers=min(workers, len(paths) // 64),
                        collate_fn=list, worker_init_fn=init_reader_worker if workers else None)
    bad: dict[Path, str] = {}
    position = 0
    with tqdm(total=len(paths), desc="checking images", unit="img", disable=not progress, dynamic_ncols=True) as bar:
        for errors in loader:
            for error in errors:
                if error is not None:
                    bad[paths[position]] = error
                    tqdm.write(f"skipping {paths[position]}: {error}")
                position += 1
            bar.update(len(errors))
    return bad
