"""`whysim train` / `whysim evaluate` through the real CLI, model, feature cache, SQLite and FAISS."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from whysim.indexer.catalog.database import open_catalog_engine
from whysim.indexer.catalog.repository import Catalog
from whysim.indexer.model.loading import ModelRequest, build_branch, load_checkpoint, load_for_card
from whysim.indexer.pipeline.reading import ReadRequest, read_image_file
from whysim.indexer.training.splits import SPLITS, Split
from whysim.indexer.vectors import VectorStore
from whysim.webui.cli import cli


@pytest.fixture
def catalog_url() -> None:
    """SQLite only: these commands use the catalog just to find the index's model."""
    return None


FAST = ["--input-size", "64", "--workers", "0", "--no-progress"]
CLASSES = {"blobs": 10, "stripes": 10, "blobs_b": 10}


def invoke(*args: str, expect: int = 0):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == expect, result.output
    return result


def run_json(*args: str) -> dict:
    return json.loads(invoke(*args, "--json").stdout)


def branch_vectors(branch, paths: list[Path]) -> np.ndarray:
    pixels = torch.stack([read_image_file(ReadRequest(0, p), branch.input_size, 10**8).pixels for p in paths])
    with torch.no_grad():
        return branch(pixels).numpy()


@pytest.mark.slow
def test_train_index_search_evaluate_round_trip(make_collection, datadir, tmp_path: Path) -> None:
    root = make_collection(CLASSES)
    run_dir = tmp_path / "run"
    report = run_json("train", str(root), "--data-dir", str(datadir.root), "--output", str(run_dir),
                      "--epochs", "1", *FAST)
    assert report["output"] == str(run_dir)
    for name in ("card.json", "weights.pt", "split.json", "history.json"):
        assert (run_dir / name).is_file()
    card = json.loads((run_dir / "card.json").read_text())
    assert card["head_dim"] == 256 and card["dim"] == 256 and card["input_size"] == 64
    assert card["training"]["split_counts"] == {"train": 18, "validation": 6, "test": 6}
    history = json.loads((run_dir / "history.json").read_text())
    assert [row["epoch"] for row in history] == [0, 1]  # validation before training, then each epoch
    assert card["training"]["best_epoch"] == 1  # training improved validation ROC-AUC
    assert card["metrics"]["validation"]["pair_roc_auc"] == history[1]["pair_roc_auc"] > history[0]["pair_roc_auc"]
    assert card["threshold"] != 0.5  # chosen on validation, not the untrained default
    split = Split.load(run_dir / "split.json")
    assert sum(len(split.of(name)) for name in SPLITS) == 30

    # the checkpoint's head really was trained: it differs from the untrained head
    trained = load_checkpoint(run_dir)
    untrained = build_branch(ModelRequest(input_size=64, head_dim=256, head="mlp"))
    assert trained.card.head == "mlp"
    assert not torch.equal(trained.head[0].weight, untrained.head[0].weight)
    assert torch.equal(trained.features[0][0].weight, untrained.features[0][0].weight)  # backbone frozen

    indexed = run_json("index", str(root), "--model", str(run_dir), "--data-dir", str(datadir.root), *FAST)
    assert indexed["indexed"] == 30 and indexed["vectors"] == 30

    engine = open_catalog_engine(datadir.catalog_url)
    try:
        catalog = Catalog(engine)
        active = catalog.active_model()
        images = catalog.list_images(limit=100)
    finally:
        engine.dispose()
    assert active.weights_digest == trained.card.weights_digest and active.threshold == card["threshold"]
    # what a search engine rebuilds from the index is the trained model
    rebuilt = load_for_card(active, datadir.models_dir)
    assert rebuilt.card.weights_digest == trained.card.weights_digest

    store = VectorStore.load(datadir.vectors_path)
    expected = branch_vectors(trained, [image.absolute_path for image in images])
    stored = np.stack([store.reconstruct(image.id) for image in images])
    np.testing.assert_allclose(stored, expected, atol=1e-5)
    scores, ids = store.search(expected[:3], 5)
    assert ids[:, 0].tolist() == [image.id for image in images[:3]]
    assert scores[:, 0] == pytest.approx([1.0] * 3, abs=1e-4)

    result = run_json("evaluate", str(root), "--model", str(run_dir), "--split-file", str(run_dir / "split.json"),
                      "--data-dir", str(datadir.root), *FAST)
    assert result["split"] == "test" and result["images"] == 6
    for key in ("p_at_1", "p_at_10", "map_at_10", "recall_at_5", "pair_roc_auc", "pair_accuracy", "pair_f1",
                "topk_verdict_precision", "topk_verdict_recall", "topk_verdict_f1", "topk_similar_fraction"):
        assert 0.0 <= result[key] <= 1.0, key
    # Pair figures come from the verdict rule in force, not from a cosine cut it does not use.
    assert "threshold" not in result and result["verdict_cut"] == result["verdict_rule"]["cut"]
    assert result["topk_verdict_f1"] <= result["topk_verdict_f1_best"]


@pytest.mark.slow
def test_fine_tune_on_images_with_contrastive_pairs(make_collection, datadir, tmp_path: Path) -> None:
    root = make_collection(CLASSES)
    run_dir = tmp_path / "run"
    run_json("train", str(root), "--data-dir", str(datadir.root), "--output", str(run_dir), "--epochs", "1",
             "--no-cache-features", "--trainable-stages", "1", "--loss", "contrastive", "--head", "linear",
             "--head-dim", "32", *FAST)
    assert not (datadir.cache_dir / "features").exists()
    trained = load_checkpoint(run_dir)
    untrained = build_branch(ModelRequest(input_size=64))
    assert trained.card.head == "linear" and trained.card.dim == 32
    settings = trained.card.training["settings"]
    assert settings["loss"] == "contrastive" and settings["cache_features"] is False
    # (that the last module does get trained is tested in test_trainer.py)
    assert torch.equal(trained.features[-2].state_dict()["_project_conv.weight"],
                       untrained.features[-2].state_dict()["_project_conv.weight"])  # frozen
    vectors = branch_vectors(trained, sorted(root.rglob("*.jpg"))[:2])
    assert vectors.shape == (2, 32)
    assert np.linalg.norm(vectors, axis=1) == pytest.approx([1.0, 1.0], abs=1e-5)


def test_evaluate_untrained_default(make_collection, datadir) -> None:
    root = make_collection({"blobs": 4, "stripes": 4})
    result = run_json("evaluate", str(root), "--data-dir", str(datadir.root), *FAST)
    assert result["images"] == 8 and result["classes"] == 2 and result["split"] == "all"
    assert result["model"].startswith("lite0@64") and result["collection_kind"] in ("class-level", "instance-level")
    table = invoke("evaluate", str(root), "--data-dir", str(datadir.root), *FAST).stdout
    assert "mAP@10" in table and "pair ROC-AUC" in table


def test_clear_errors(make_collection, datadir, tmp_path: Path) -> None:
    root = make_collection({"blobs": 4})
    out = invoke("train", str(root), "--data-dir", str(datadir.root), *FAST, expect=1).output
    assert "needs at least two class folders" in out and "Traceback" not in out
    tiny = make_collection({"blobs": 3, "stripes": 3}, name="tiny")
    out = invoke("train", str(tiny), "--data-dir", str(datadir.root), *FAST, expect=1).output
    assert "the validation split has 0 usable images" in out and "--validation-fraction" in out
    out = invoke("evaluate", str(root), "--split", "test", *FAST, expect=2).output
    assert "--split needs --split-file" in out
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "card.json").write_text("{}")
    two = make_collection({"blobs": 4, "stripes": 4}, name="two")
    out = invoke("train", str(two), "--data-dir", str(datadir.root), "--output", str(tmp_path / "run"), *FAST,
                 expect=1).output
    assert "already holds a checkpoint" in out
