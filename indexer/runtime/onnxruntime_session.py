"""ONNX Runtime on CPU, through its OpenVINO execution provider where that build is installed
(onnxruntime-openvino), else its own CPU provider; measured against OpenVINO itself in
tests/benchmarks/bench_runtimes.py."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from whysim.indexer.model.branch import SiameseBranch
from whysim.indexer.runtime.conversion import converted_model
from whysim.indexer.runtime.session import RuntimeUnavailable

PREFERRED_PROVIDERS = ("OpenVINOExecutionProvider", "CPUExecutionProvider")
OPSET = 17


def _export(branch: SiameseBranch, target: Path) -> None:
    size = branch.input_size
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
        torch.onnx.export(branch, (torch.zeros((1, 3, size, size)),), str(target), dynamo=False,
                          input_names=["pixels"], output_names=["vectors"], opset_version=OPSET,
                          dynamic_axes={"pixels": {0: "batch"}, "vectors": {0: "batch"}})


class OnnxRuntimeSession:
    name = "onnxruntime"

    def __init__(self, branch: SiameseBranch, cache_dir: Path) -> None:
        try:
            import onnx  # noqa: F401  torch's exporter needs it
            import onnxruntime as ort
        except ImportError as exc:
            raise RuntimeUnavailable("--runtime onnxruntime needs the onnxruntime and onnx packages: "
                                     "pip install 'whysim[onnxruntime]' (or choose --runtime torch)") from exc
        self.path, self.conversion_seconds = converted_model(
            cache_dir, branch.card, self.name, ort.__version__, "model.onnx", lambda target: _export(branch, target))
        available = ort.get_available_providers()
        self.providers = [p for p in PREFERRED_PROVIDERS if p in available]
        options: list[dict[str, str]] = [
            {"precision": "FP32", "cache_dir": str(self.path.parent)} if p.startswith("OpenVINO") else {}
            for p in self.providers]
        self._session = ort.InferenceSession(str(self.path), providers=self.providers, provider_options=options)

    def run(self, pixels: torch.Tensor) -> np.ndarray:
        array = np.ascontiguousarray(pixels.cpu().numpy(), dtype=np.float32)
        return self._session.run(None, {"pixels": array})[0]
