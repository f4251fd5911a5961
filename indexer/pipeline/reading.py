"""Read stage: file bytes -> digest, size, and a model-ready uint8 tensor (runs in DataLoader workers)."""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset

from whysim.indexer.imaging import DEFAULT_MAX_PIXELS, ImageRejected, decode_image, resize_square


@dataclass(frozen=True)
class ReadRequest:
    image_id: int
    path: Path


@dataclass
class ReadResult:
    image_id: int
    sha256: str | None
    width: int | None
    height: int | None
    error: str | None
    pixels: torch.Tensor | None  # (3, S, S) uint8, a view of (S, S, 3) memory: channels_last


def model_pixels(image: Image.Image, input_size: int) -> torch.Tensor:
    """The square uint8 tensor (3, S, S) the branch embeds, resized exactly as the indexer does."""
    return torch.from_numpy(resize_square(image, input_size)).permute(2, 0, 1).contiguous()


def read_image_file(request: ReadRequest, input_size: int, max_pixels: int) -> ReadResult:
    try:
        data = request.path.read_bytes()
    except OSError as exc:
        return unreadable_file(request, exc)
    return decode_file_bytes(request.image_id, data, hashlib.sha256(data).hexdigest(), input_size, max_pixels)


def unreadable_file(request: ReadRequest, exc: OSError) -> ReadResult:
    return ReadResult(request.image_id, None, None, None, f"cannot read file: {exc.strerror or exc}", None)


def decode_file_bytes(image_id: int, data: bytes, sha256: str, input_size: int, max_pixels: int) -> ReadResult:
    """The PIL path: decode, convert to RGB, resize; or the reason the file is refused."""
    try:
        decoded = decode_image(data, max_pixels=max_pixels, draft_size=input_size)
    except ImageRejected as exc:
        return ReadResult(image_id, sha256, None, None, str(exc), None)
    array = resize_square(decoded.image, input_size)
    pixels = torch.from_numpy(array).permute(2, 0, 1)  # no copy: the model wants channels_last
    return ReadResult(image_id, sha256, decoded.width, decoded.height, None, pixels)


class ImageFileDataset(Dataset[ReadResult]):
    def __init__(self, requests: Sequence[ReadRequest], input_size: int,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        self.requests = list(requests)
        self.input_size = input_size
        self.max_pixels = max_pixels

    def __len__(self) -> int:
        return len(self.requests)

    def __getitem__(self, index: int) -> ReadResult:
        return read_image_file(self.requests[index], self.input_size, self.max_pixels)


@dataclass
class ReadBatch:
    results: list[ReadResult]
    pixels: torch.Tensor | None  # (B, 3, S, S) pixels of the results without error, in order; channels_last


def collate_reads(results: list[ReadResult]) -> ReadBatch:
    ok = [r.pixels for r in results if r.pixels is not None]
    # Stacking the (S, S, 3) memory and permuting back gives a channels_last batch, so the
    # embedder uses it as it is instead of copying it into that layout.
    stacked = torch.stack([p.permute(1, 2, 0) for p in ok]).permute(0, 3, 1, 2) if ok else None
    for result in results:
        result.pixels = None  # travel once, in the stacked tensor
    return ReadBatch(results, stacked)


def init_reader_worker(_worker_id: int) -> None:
    # Decoding is single-threaded per worker; extra torch threads here would only steal
    # cores from the model in the main process.
    torch.set_num_threads(1)
