"""The branch itself, in PyTorch eager mode: CUDA, and CPU where no faster runtime is installed."""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools

import numpy as np
import torch

from whysim.indexer.model.branch import SiameseBranch

# glibc mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


@functools.cache
def retain_freed_memory() -> bool:
    """Makes glibc keep freed memory in the process instead of handing it back to the OS.

    A CPU forward pass allocates tens of megabytes per layer. By default glibc serves each
    such block with a fresh mmap and unmaps it on free, so every layer of every batch
    page-faults its memory in again: on 2 cores that kernel time was larger than the
    model's own compute (Lite0, batch 64 at 224x224: 35 ms system per image against 19 ms
    user; with this, about 1 ms). The cost is a resident size that stays at its peak, so
    only PyTorch's CPU forward pass asks for it (OpenVINO plans its own memory once).
    No-op (False) where the C library is not glibc.
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """Mixed precision on CUDA (bf16 where supported, else fp16); full precision on CPU."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return None


def autocast_for(device: torch.device) -> contextlib.AbstractContextManager[object]:
    dtype = autocast_dtype(device)
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()


class TorchSession:
    """Expects a branch prepared for inference (BatchNorm folded, channels_last, on `device`)."""

    name = "torch"

    def __init__(self, branch: SiameseBranch, device: torch.device) -> None:
        self.branch = branch
        self.device = device
        if device.type == "cpu":
            retain_freed_memory()

    @torch.inference_mode()
    def run(self, pixels: torch.Tensor) -> np.ndarray:
        batch = pixels.to(self.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        with autocast_for(self.device):
            vectors = self.branch(batch)
        return vectors.float().cpu().numpy()
