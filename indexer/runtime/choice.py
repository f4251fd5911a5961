"""`--runtime auto|torch|openvino|onnxruntime`: which runtime embeds, and opening its session."""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

from whysim.indexer.runtime.session import RuntimeUnavailable

if TYPE_CHECKING:  # imports nothing heavy at run time: the CLI's --help reads RUNTIMES from here
    import torch

    from whysim.indexer.model.branch import SiameseBranch
    from whysim.indexer.runtime.session import EmbeddingSession

RUNTIMES = ("auto", "torch", "openvino", "onnxruntime")
DEFAULT_RUNTIME = "auto"
# auto on CPU: the first one installed, fastest first (tests/benchmarks/bench_runtimes.py, docs/runtimes.md).
CPU_PREFERENCE = ("openvino", "onnxruntime", "torch")
_MODULES = {"openvino": "openvino", "onnxruntime": "onnxruntime", "torch": "torch"}


def installed(runtime: str) -> bool:
    return importlib.util.find_spec(_MODULES[runtime]) is not None


def resolve_runtime(runtime: str, device: torch.device) -> str:
    """The runtime that will embed on `device`: `auto` resolved, the others checked."""
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    if device.type != "cpu":
        if runtime not in ("auto", "torch"):
            raise RuntimeUnavailable(f"--runtime {runtime} runs on the CPU only; with --device {device.type} "
                                     f"choose --runtime torch (or auto)")
        return "torch"
    if runtime == "auto":
        return next(name for name in CPU_PREFERENCE if installed(name))
    if not installed(runtime):
        extra = "openvino" if runtime == "openvino" else "'whysim[onnxruntime]'"
        raise RuntimeUnavailable(f"--runtime {runtime} is not installed here: pip install {extra}, "
                                 f"or choose --runtime torch (or auto)")
    return runtime


def open_session(branch: SiameseBranch, device: torch.device, runtime: str, cache_dir: Path) -> EmbeddingSession:
    """A session for a branch prepared for inference (see Embedder); converts on first use."""
    chosen = resolve_runtime(runtime, device)
    if chosen == "openvino":
        from whysim.indexer.runtime.openvino_session import OpenVINOSession

        return OpenVINOSession(branch, cache_dir)
    if chosen == "onnxruntime":
        from whysim.indexer.runtime.onnxruntime_session import OnnxRuntimeSession

        return OnnxRuntimeSession(branch, cache_dir)
    from whysim.indexer.runtime.torch_session import TorchSession

    return TorchSession(branch, device)
