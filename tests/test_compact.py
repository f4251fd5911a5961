"""`whysim compact`: rebuilds the index from stored vectors, keeping ids and answers."""
from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner
from whysim_cli import live_store

from whysim.indexer.datadir import DataDir
from whysim.webui.cli import cli

SMALL = ["--input-size", "64", "--workers", "0", "--no-progress"]


def run(*args: str) -> dict:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def neighbours(datadir: DataDir) -> tuple[np.ndarray, np.ndarray]:
    with live_store(datadir) as (_, store):
        ids = np.sort(store.ids())
        queries = np.stack([store.reconstruct(int(i)) for i in ids])
        return ids, store.search(queries, 3)[1]


def test_compact_changes_type_and_keeps_ids_and_results(make_collection, datadir: DataDir) -> None:
    root = make_collection({"blobs": 6, "stripes": 6})
    run("index", str(root), "--data-dir", str(datadir.root), "--json", *SMALL)
    ids_before, found_before = neighbours(datadir)

    report = run("compact", "--data-dir", str(datadir.root), "--index-type", "hnsw", "--json")
    assert (report["index_type_before"], report["index_type"], report["vectors"]) == ("flat", "hnsw", 12)
    ids_after, found_after = neighbours(datadir)
    assert np.array_equal(ids_before, ids_after)
    assert np.array_equal(found_before[:, 0], found_after[:, 0])  # each image is its own nearest
    assert (found_before == found_after).mean() >= 0.9

    # The choice persists: a later index run keeps hnsw although 12 images would be "flat".
    (root / "blobs" / "blobs_000.jpg").unlink()
    after_prune = run("index", str(root), "--data-dir", str(datadir.root), "--prune", "--json", "--no-progress")
    assert after_prune["index_type"] == "hnsw" and after_prune["vectors"] == 11
    assert run("compact", "--data-dir", str(datadir.root), "--index-type", "auto", "--json")["index_type"] == "flat"


def test_compact_drops_vectors_without_an_indexed_row(make_collection, datadir: DataDir) -> None:
    root = make_collection({"blobs": 4})
    run("index", str(root), "--data-dir", str(datadir.root), "--json", *SMALL)
    with live_store(datadir) as (location, store):
        store.add([10_000], store.reconstruct(int(store.ids()[0]))[None, :])  # as if a crash left it
        location.save(store)
    report = run("compact", "--data-dir", str(datadir.root), "--json")
    assert report["orphans_removed"] == 1 and report["vectors"] == 4


def test_compact_without_an_index_says_so(datadir: DataDir) -> None:
    result = CliRunner().invoke(cli, ["compact", "--data-dir", str(datadir.root)])
    assert result.exit_code == 1 and "run `whysim index` first" in result.output
