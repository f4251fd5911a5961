"""The CPU runtimes of the embedding forward pass (whysim.indexer.runtime): the same vectors as
PyTorch, converted once and cached, a clear message when one is missing, and an index built with
one runtime served by another with the explanation's score equal to the search score."""
from __future__ import annotations

import io
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import SAMPLES

from whysim.indexer.datadir import DataDir
from whysim.indexer.model.loading import ModelRequest, build_branch
from whysim.indexer.pipeline.embedding import Embedder
from whysim.indexer.pipeline.reading import ReadRequest, read_image_file
from whysim.indexer.scanning import scan_collection
from whysim.webui.app import create_app
from whysim.webui.cli import cli

SIZE = 64
CONVERTED = ("openvino", "onnxruntime")


def sample_pixels(count: int) -> torch.Tensor:
    files = sorted(scan_collection(SAMPLES), key=lambda f: f.path)[:count]
    return torch.stack([read_image_file(ReadRequest(i, SAMPLES / f.path), SIZE, 10**8).pixels
                        for i, f in enumerate(files)])


def embedder(runtime: str, cache: Path) -> Embedder:
    return Embedder(build_branch(ModelRequest(input_size=SIZE)), torch.device("cpu"), runtime, cache)


@pytest.mark.parametrize("runtime", CONVERTED)
def test_a_converted_runtime_gives_pytorchs_vectors(runtime: str, tmp_path: Path) -> None:
    pixels = sample_pixels(9)
    reference = embedder("torch", tmp_path)(pixels)
    converted = embedder(runtime, tmp_path)
    assert converted.runtime == runtime
    for batch in (pixels, pixels[:1], pixels[:4]):  # the batch size is dynamic
        vectors = converted(batch)
        assert vectors.dtype == np.float32 and vectors.shape == (len(batch), reference.shape[1])
        assert np.abs(vectors - reference[:len(batch)]).max() <= 1e-5


def test_a_conversion_is_made_once_per_model_and_runtime_version(tmp_path: Path) -> None:
    cache = tmp_path / "runtimes"
    first = embedder("openvino", cache).session
    again = embedder("openvino", cache).session
    assert first.conversion_seconds > 0 and again.conversion_seconds == 0.0  # type: ignore[attr-defined]
    folder = first.path.parent  # type: ignore[attr-defined]
    card = build_branch(ModelRequest(input_size=SIZE)).card
    import openvino

    assert folder.name.startswith(f"{card.key()}-openvino-{openvino.__version__.split('-')[0]}")
    other = Embedder(build_branch(ModelRequest(input_size=96)), torch.device("cpu"), "openvino", cache).session
    assert other.path.parent != folder  # type: ignore[attr-defined]
    assert sorted(p.name for p in cache.iterdir()) == sorted([folder.name, other.path.parent.name])  # type: ignore[attr-defined]


def run_without(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`whysim ARGS` in a fresh interpreter in which `module` cannot be imported, as if not installed."""
    code = f"import sys; sys.modules[{module!r}] = None; from whysim.webui.cli import main; main()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)


def test_a_missing_runtime_is_a_clear_message_and_auto_falls_back(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    shutil.copytree(SAMPLES / "daisy", photos)
    refused = run_without("openvino", "index", str(photos), "--data-dir", str(tmp_path / "a"), "--runtime",
                          "openvino", "--input-size", str(SIZE), "--no-progress")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "--runtime openvino is not installed here: pip install openvino" in refused.stderr
    fallback = run_without("openvino", "evaluate", str(SAMPLES), "--data-dir", str(tmp_path / "b"), "--input-size",
                           str(SIZE), "--workers", "0", "--json")
    assert fallback.returncode == 0, fallback.stderr
    assert '"runtime": "onnxruntime"' in fallback.stdout  # auto: the next installed, fastest first


def served_answers(datadir: DataDir, runtime: str, query: bytes) -> tuple[list[dict], list[dict]]:
    client = create_app({"TESTING": True, "WHYSIM_DATA_DIR": str(datadir.root), "WHYSIM_RATE_LIMITS": False,
                         "WHYSIM_RUNTIME": runtime}).test_client()
    hits = client.post("/api/search", data={"image": (io.BytesIO(query), "q.jpg"), "k": "10"}).json["hits"]
    explained = [client.get(hit["explain_url"]).json for hit in hits[:3]]
    return hits, explained


@pytest.mark.parametrize("built, served", [("torch", "openvino"), ("openvino", "torch")])
def test_an_index_built_with_one_runtime_is_served_by_another(built: str, served: str, tmp_path: Path) -> None:
    datadir = DataDir(tmp_path / "data")
    result = CliRunner().invoke(cli, ["index", str(SAMPLES), "--data-dir", str(datadir.root), "--runtime", built,
                                      "--input-size", str(SIZE), "--no-progress"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    query = (SAMPLES / "rose").iterdir().__next__().read_bytes()
    hits, explained = served_answers(datadir, served, query)
    same, _ = served_answers(datadir, built, query)
    assert [hit["id"] for hit in hits] == [hit["id"] for hit in same]  # the same top 10 on either runtime
    assert np.abs(np.array([h["score"] for h in hits]) - [h["score"] for h in same]).max() <= 1e-5
    for hit, explanation in zip(hits, explained):  # explanations run in PyTorch: the same score
        assert explanation["similarity"] == pytest.approx(hit["score"], abs=1e-5)
