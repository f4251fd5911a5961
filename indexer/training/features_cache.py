"""Backbone features computed once per image and view, kept on disk for frozen-backbone training.

With the backbone (or all but its last N modules) frozen, its output for an image never
changes, so it is computed once and every epoch trains only the tail: an epoch then costs
the trainable part alone. Rows are keyed by file content (sha256) in a folder keyed by
everything that changes the features (trunk weights, cut point, input size, views), so
reruns, other splits and other seeds reuse them.

Layout: `maps.f16` holds rows of float16 (V, C, h, w) back to back; `rows.json` lists the
digests of the rows written so far. Data is appended and synced before `rows.json` names
it, so a crash leaves at most unnamed bytes, which the next append overwrites.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from whysim.indexer.imaging import ImageRejected
from whysim.indexer.model.loading import state_digest
from whysim.indexer.pipeline.reading import init_reader_worker
from whysim.indexer.training.views import load_picture, render_views

CACHE_VERSION = 1
MAPS_FILE = "maps.f16"
ROWS_FILE = "rows.json"


@dataclass(frozen=True)
class CacheKey:
    backbone: str
    trunk_digest: str
    cut: int
    input_size: int
    views: tuple[str, ...]

    def folder_name(self) -> str:
        text = json.dumps({"version": CACHE_VERSION, **self.__dict__}, sort_keys=True)
        return f"{self.backbone}-{self.input_size}-cut{self.cut}-" + hashlib.sha256(text.encode()).hexdigest()[:16]


def cache_key(backbone: str, trunk: torch.nn.Module, cut: int, input_size: int, views: Sequence[str]) -> CacheKey:
    return CacheKey(backbone, state_digest(trunk), cut, input_size, tuple(views))


TrunkFn = Callable[[torch.Tensor], torch.Tensor]
"""uint8 pixels (B, 3, S, S) -> features at the cut point (B, C, h, w)."""


class FeatureCache:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.shape: tuple[int, ...] | None = None
        self.row_of: dict[str, int] = {}
        self.reload()

    def reload(self) -> None:
        rows_path = self.directory / ROWS_FILE
        if rows_path.is_file():
            data = json.loads(rows_path.read_text())
            self.shape = tuple(data["shape"])
            self.row_of = {sha: row for row, sha in enumerate(data["shas"])}

    @property
    def row_bytes(self) -> int:
        assert self.shape is not None
        return int(np.prod(self.shape)) * 2

    def missing(self, shas: Sequence[str]) -> list[str]:
        return [sha for sha in dict.fromkeys(shas) if sha not in self.row_of]

    @contextmanager
    def locked(self) -> Iterator[FeatureCache]:
        """Exclusive use while appending: two trainers must not interleave rows."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / "cache.lock", "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield FeatureCache(self.directory)  # re-read under the lock
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def append(self, shas: Sequence[str], maps: np.ndarray) -> None:
        maps = np.ascontiguousarray(maps, dtype=np.float16)
        if self.shape is None:
            self.shape = tuple(maps.shape[1:])
        if tuple(maps.shape[1:]) != self.shape or len(maps) != len(shas):
            raise ValueError(f"rows of shape {maps.shape} do not fit the cache's {self.shape}")
        path = self.directory / MAPS_FILE
        with open(path, "ab+") as handle:
            handle.truncate(len(self.row_of) * self.row_bytes)  # drop bytes no row names
            handle.seek(0, os.SEEK_END)
            handle.write(maps.tobytes())
            handle.flush()
            os.fsync(handle.fileno())
        for sha in shas:
            self.row_of[sha] = len(self.row_of)
        tmp = self.directory / (ROWS_FILE + ".tmp")
        ordered = sorted(self.row_of, key=self.row_of.__getitem__)
        tmp.write_text(json.dumps({"version": CACHE_VERSION, "shape": list(self.shape), "shas": ordered}))
        tmp.replace(self.directory / ROWS_FILE)

    def reader(self) -> CachedRows:
        """All rows, (rows, V, C, h, w) float16, read from disk when indexed."""
        if self.shape is None or not self.row_of:
            raise ValueError(f"feature cache {self.directory} is empty")
        return CachedRows(self.directory / MAPS_FILE, len(self.row_of), self.shape)


class CachedRows:
    """The cache's rows, read on demand with positional reads rather than memory-mapped.

    A mapping keeps every page it has touched resident in the process, and training reads every
    row (in one of its views) each epoch: at 448 px a flowers cache is 0.5 MB per view, 6.5 GB
    for 4,317 images x 3 views, all of which a memory-mapped reader would end up holding.
    Read like an array: `rows[i]` (all views of row i), `rows[i, v]`, `rows[row_array, view_array]`.
    """

    def __init__(self, path: Path, count: int, row_shape: tuple[int, ...]) -> None:
        self.path = path
        self.shape = (count, *row_shape)
        self._view_bytes = int(np.prod(row_shape[1:])) * 2
        self._row_bytes = self._view_bytes * row_shape[0]

    def __len__(self) -> int:
        return self.shape[0]

    def _read(self, handle: int, offset: int, size: int) -> np.ndarray:
        data = os.pread(handle, size, offset)
        if len(data) != size:
            raise ValueError(f"feature cache {self.path} is shorter than its rows say")
        return np.frombuffer(data, dtype=np.float16)

    def __getitem__(self, key: object) -> np.ndarray:
        rows, views = key if isinstance(key, tuple) else (key, None)
        single = np.ndim(rows) == 0
        rows = np.atleast_1d(np.asarray(rows, dtype=np.int64))
        handle = os.open(self.path, os.O_RDONLY)
        try:
            if views is None:
                out = np.stack([self._read(handle, int(r) * self._row_bytes, self._row_bytes) for r in rows])
                out = out.reshape(len(rows), *self.shape[1:])
            else:
                views = np.broadcast_to(np.asarray(views, dtype=np.int64), rows.shape)
                out = np.stack([self._read(handle, int(r) * self._row_bytes + int(v) * self._view_bytes,
                                           self._view_bytes) for r, v in zip(rows, views)])
                out = out.reshape(len(rows), *self.shape[2:])
        finally:
            os.close(handle)
        return out[0] if single else out


ViewsItem = tuple[int, torch.Tensor | None, str | None]
"""(position, views (V, 3, S, S) uint8 or None, error or None)"""


class _ViewsDataset(Dataset[ViewsItem]):
    def __init__(self, paths: Sequence[Path], input_size: int, views: Sequence[str]) -> None:
        self.paths, self.input_size, self.views = list(paths), input_size, tuple(views)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> ViewsItem:
        try:
            picture = load_picture(self.paths[index], self.input_size)
        except (ImageRejected, OSError) as exc:
            return index, None, str(exc)
        return index, render_views(picture, self.input_size, self.views), None


def _keep_as_list(items: list[ViewsItem]) -> list[ViewsItem]:
    return items


def fill_cache(cache: FeatureCache, files: Sequence[tuple[str, Path]], trunk_maps: TrunkFn,
               input_size: int, views: Sequence[str], batch_size: int, workers: int,
               progress: bool) -> dict[str, str]:
    """Computes the features of the files (sha, path) not yet cached. Returns {sha: error}
    for files that could not be decoded (they are skipped, never fatal)."""
    failures: dict[str, str] = {}
    with cache.locked() as writable:
        missing = set(writable.missing([sha for sha, _ in files]))
        todo = dict((sha, path) for sha, path in files if sha in missing)
        if todo:
            shas, paths = list(todo), list(todo.values())
            dataset = _ViewsDataset(paths, input_size, views)
            workers = min(workers, max(0, len(paths) // max(1, batch_size)))
            loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers, collate_fn=_keep_as_list,
                                worker_init_fn=init_reader_worker if workers else None)
            with tqdm(total=len(paths), desc="caching features", unit="img", disable=not progress,
                      dynamic_ncols=True) as bar:
                for batch in loader:
                    for index, _, error in batch:
                        if error is not None:
                            failures[shas[index]] = error
                            tqdm.write(f"skipping {paths[index]}: {error}")
                    good = [(index, pixels) for index, pixels, _ in batch if pixels is not None]
                    if good:
                        stacked = torch.stack([pixels for _, pixels in good]).flatten(0, 1)  # (B*V, 3, S, S)
                        maps = trunk_maps(stacked)
                        maps = maps.reshape(len(good), len(views), *maps.shape[1:])
                        writable.append([shas[index] for index, _ in good], maps.float().cpu().numpy())
                    bar.update(len(batch))
    cache.reload()
    return failures
