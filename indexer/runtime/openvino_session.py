"""OpenVINO on CPU: the fastest runtime measured for the default model (tests/benchmarks/bench_runtimes.py).

The branch (BatchNorm folded) is converted once to OpenVINO's IR with a dynamic batch size and
compiled for full fp32 precision: OpenVINO would otherwise run bf16 on CPUs that have it, whose
vectors differ from PyTorch's in the second decimal, and an index must be servable by either
runtime with the explanation's score equal to the search score. With the THROUGHPUT hint the
CPU plugin runs several streams, each on part of the cores; a batch is fed to them one image per
request, through a model compiled for a static batch of one.
The model takes the uint8 pixels as they are decoded and converts them to float inside the graph,
in its streams: converting a batch of 32 at 448 px in NumPy first took about 5% of the run on
2 cores, and a quarter of the bytes cross into OpenVINO (the same vectors, bit for bit).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from whysim.indexer.model.branch import SiameseBranch
from whysim.indexer.runtime.conversion import converted_model
from whysim.indexer.runtime.session import RuntimeUnavailable

# THROUGHPUT measured faster than LATENCY (one stream on every core) at batch 32
# (tests/benchmarks/bench_runtimes.py; docs/runtimes.md).
DEFAULT_HINT = "THROUGHPUT"
# Images per inference request: a batch goes through the streams one image at a time, on a model
# compiled for that static shape. OpenVINO plans activation memory for the largest request, so
# whole batches of 32 at 448 px held 1.3 GB where slices of 2 held about 0.45 GB; a static batch of
# one ran 1.09-1.13x faster than dynamic slices of 2 (2 cores, rounds interleaved; as two halves
# of the batch it ran 1.4x slower).
REQUEST_IMAGES = 1


def _convert(branch: SiameseBranch, target: Path) -> None:
    import openvino as ov

    size = branch.input_size
    example = torch.zeros((1, 3, size, size))
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # torch.jit.trace's deprecation notes: OpenVINO traces with it
        model = ov.convert_model(branch, example_input=example, input=[([-1, 3, size, size], ov.Type.f32)])
    preprocessing = ov.preprocess.PrePostProcessor(model)
    preprocessing.input().tensor().set_element_type(ov.Type.u8)
    preprocessing.input().preprocess().convert_element_type(ov.Type.f32)
    ov.save_model(preprocessing.build(), target, compress_to_fp16=False)


class OpenVINOSession:
    name = "openvino"

    def __init__(self, branch: SiameseBranch, cache_dir: Path, performance_hint: str = DEFAULT_HINT) -> None:
        try:
            import openvino as ov
        except ImportError as exc:
            raise RuntimeUnavailable("--runtime openvino needs the openvino package: pip install openvino "
                                     "(or choose --runtime torch)") from exc
        self.path, self.conversion_seconds = converted_model(
            cache_dir, branch.card, self.name, ov.__version__, "model.xml", lambda target: _convert(branch, target))
        config = {"PERFORMANCE_HINT": performance_hint, "INFERENCE_PRECISION_HINT": "f32"}
        core = ov.Core()
        model = core.read_model(self.path)
        model.reshape([REQUEST_IMAGES, 3, branch.input_size, branch.input_size])
        self.compiled = core.compile_model(model, "CPU", config)
        self.streams = max(1, int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        self._queue = ov.AsyncInferQueue(self.compiled, self.streams)
        self._outputs: list[np.ndarray | None] = []
        self._queue.set_callback(self._collect)

    def _collect(self, request: object, slot: int) -> None:
        self._outputs[slot] = request.get_output_tensor(0).data.copy()  # type: ignore[attr-defined]

    def run(self, pixels: torch.Tensor) -> np.ndarray:
        if pixels.dtype != torch.uint8:
            raise TypeError(f"OpenVINO embeds uint8 images as they are decoded, not {pixels.dtype}")
        array = np.ascontiguousarray(pixels.cpu().numpy())
        parts = [array[start:start + REQUEST_IMAGES] for start in range(0, len(array), REQUEST_IMAGES)]
        self._outputs = [None] * len(parts)
        for slot, part in enumerate(parts):
            self._queue.start_async({0: part}, slot)
        self._queue.wait_all()
        return np.concatenate(self._outputs)  # type: ignore[arg-type]
