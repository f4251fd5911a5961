"""A whitened index served by the API: hits, explanations and uploads all score in the whitened
space, and search and explain agree on the score and the verdict of every hit."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import encode, make_picture

from search_layer.collection import run_index
from whysim.indexer.datadir import DataDir
from whysim.indexer.model.whitening import MIN_VECTORS
from whysim.indexer.vectors import VectorStore
from whysim.webui.cli import cli


@pytest.fixture(scope="module")
def whitened_index(tmp_path_factory: pytest.TempPathFactory) -> DataDir:
    root = tmp_path_factory.mktemp("whitened") / "photos"
    for number in range(MIN_VECTORS + 6):  # pairs of views of one scene: instance-level, so whitened
        seed, view = number // 2, number % 2
        kind = "stripes" if seed % 2 else "blobs"
        (root / kind).mkdir(parents=True, exist_ok=True)
        picture = make_picture(seed, size=(96 + 4 * view, 72), kind=kind)
        (root / kind / f"{kind}_{number:03d}.jpg").write_bytes(encode(picture, quality=90))
    datadir = DataDir(root.parent / "data")
    run_index(root, datadir)
    assert VectorStore.load(datadir.vectors_path).whitening is not None
    return datadir


def test_search_and_explain_agree_on_whitened_scores_and_verdicts(make_app, whitened_index) -> None:
    client = make_app(whitened_index).test_client()
    body = client.post("/api/search", json={"image_id": 1, "k": 5}).json
    assert body["verdict_rule"]["kind"] == "default" and len(body["hits"]) == 5
    verdicts = set()
    for hit in body["hits"]:
        explained = client.get(hit["explain_url"]).json
        assert explained["similarity"] == pytest.approx(hit["score"], abs=1e-3)
        assert explained["verdict"] == hit["verdict"]
        assert explained["verdict_score"] == pytest.approx(hit["verdict_score"], abs=1e-2)
        verdicts.add(hit["verdict"])
    # The raw cosine of unwhitened vectors would be far higher than what search reports.
    store = VectorStore.load(whitened_index.vectors_path)
    raw = store.branch_vectors()[list(store.ids()).index(1)]
    raw_hit = store.branch_vectors()[list(store.ids()).index(body["hits"][0]["id"])]
    assert abs(float(raw @ raw_hit) - body["hits"][0]["score"]) > 1e-3


def test_an_upload_is_whitened_like_the_indexed_vectors(make_app, whitened_index) -> None:
    client = make_app(whitened_index).test_client()
    data = encode(make_picture(1, kind="stripes"), quality=90)  # the bytes of stripes_002.jpg
    body = client.post("/api/search", data={"image": (io.BytesIO(data), "q.jpg"), "k": "1"}).json
    listed = client.get("/api/images?limit=200").json["images"]
    same_file = next(image["id"] for image in listed if image["path"] == "stripes/stripes_002.jpg")
    by_id = client.post("/api/search", json={"image_id": same_file, "k": 1}).json
    assert body["hits"][0]["id"] == by_id["hits"][0]["id"]
    assert body["hits"][0]["score"] == pytest.approx(by_id["hits"][0]["score"], abs=1e-3)


def test_evaluate_explanations_scores_pairs_as_the_served_index_does(make_app, whitened_index) -> None:
    root = whitened_index.root.parent / "photos"
    result = CliRunner().invoke(cli, ["evaluate-explanations", str(root), "--pairs", "2", "--steps", "2",
                                      "--random-boxes", "2", "--json", "--no-progress",
                                      "--data-dir", str(whitened_index.root)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    store = VectorStore.load(whitened_index.vectors_path)
    assert report["whitening"] == store.whitening.digest() and report["verdict_rule"]["kind"] == "default"
    client = make_app(whitened_index).test_client()
    listed = {image["path"]: image["id"] for image in client.get("/api/images?limit=200").json["images"]}
    for pair in report["pair_results"]:
        query, hit = (listed[str(Path(path).relative_to(root))] for path in (pair["query"], pair["hit"]))
        served = client.get(f"/api/explain?query={query}&hit={hit}").json
        assert pair["similarity"] == pytest.approx(served["similarity"], abs=1e-3)
        assert pair["verdict"] == served["verdict"]
