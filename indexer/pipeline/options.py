"""The choices and sizes `whysim index` offers, in a module that imports nothing heavy, so that
`whysim index --help` lists them without loading torch or FAISS (the pipeline imports them here)."""
from __future__ import annotations

import os

CPU_BATCH_SIZE = 32
CUDA_BATCH_SIZE = 256
DECODERS = ("auto", "pil", "device")
ENGINES = ("builtin", "ray")  # ray: read, decode and embed on a Ray cluster (indexer/pipeline/ray_engine.py)
WHITENING_CHOICES = ("auto", "off")  # indexer/pipeline/whitening_policy.py


def default_workers() -> int:
    return max(1, min(4, (os.cpu_count() or 2)))
