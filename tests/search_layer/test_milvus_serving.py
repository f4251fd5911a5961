"""Serving from Milvus (PostgreSQL catalog): the served index notices each new save and
generation the indexer records in the catalog (as the FAISS file's stamp), picks up added
images and drops pruned ones without a restart; two servers on one catalog and one Milvus
server move to a new generation together."""
from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest
from benchmarks.http_load import ServerProcess, whysim_server
from click.testing import CliRunner
from conftest import encode, make_picture

from search_layer.collection import PICTURE_SIZE, SMALL_MODEL
from whysim.indexer.catalog.database import open_catalog_engine
from whysim.indexer.catalog.repository import Catalog
from whysim.indexer.datadir import DataDir
from whysim.search.serving.engine import SearchEngine
from whysim.webui.cli import cli


def index(root: Path, datadir: DataDir, *extra: str) -> None:
    result = CliRunner().invoke(cli, ["index", str(root), "--data-dir", str(datadir.root), "--catalog-url",
                                      str(datadir.catalog_url_override), *SMALL_MODEL, *extra],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output


def test_a_served_milvus_index_follows_the_indexer(tmp_path: Path, postgres_server, make_collection) -> None:
    root = make_collection({"blobs": 3, "stripes": 3})
    datadir = DataDir(tmp_path / "data", postgres_server.url(postgres_server.create_database("serving")))
    index(root, datadir, "--vector-store", f"milvus:{tmp_path / 'vectors.db'}")
    engine = SearchEngine.open(datadir)  # Milvus Lite: indexer and server share this process's embedded server
    try:
        first, first_stamp = engine.snapshot(), engine.watcher.current().stamp
        assert len(first.store) == 6 and engine.location is not None and "vectors.db" in engine.location.description

        for seed in (801, 802):
            (root / "blobs" / f"new_{seed}.jpg").write_bytes(encode(make_picture(seed, PICTURE_SIZE)))
        index(root, datadir)  # the store is remembered in the catalog
        second, second_stamp = engine.snapshot(), engine.watcher.current().stamp
        assert second_stamp != first_stamp and len(second.store) == 8
        new_ids = {info.id for info in engine.catalog.list_images(limit=100) if info.path.startswith("blobs/new_")}
        hits = engine.search_by_id(min(new_ids), k=7).hits
        assert max(new_ids) in {hit.id for hit in hits} and len(hits) == 7

        (root / "blobs" / "new_801.jpg").unlink()
        index(root, datadir, "--prune")
        third = engine.snapshot()
        assert engine.watcher.current().stamp != second_stamp and len(third.store) == 7
        assert all(hit.image.path != "blobs/new_801.jpg" for hit in engine.search_by_id(max(new_ids), k=10).hits)
    finally:
        engine.close()


def search_by_id(server: ServerProcess, image_id: int) -> list[tuple[int, float]]:
    request = urllib.request.Request(f"{server.base_url}/api/search", json.dumps({"image_id": image_id, "k": 5}).encode(),
                                     {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return [(hit["id"], round(hit["score"], 4)) for hit in json.loads(response.read())["hits"]]


@pytest.mark.slow
def test_two_servers_on_one_catalog_and_milvus_server_move_to_a_new_generation(
        tmp_path: Path, postgres_server, milvus_server, make_collection) -> None:
    root = make_collection({"blobs": 4, "stripes": 4})
    datadir = DataDir(tmp_path / "data", postgres_server.url(postgres_server.create_database("two")))
    index(root, datadir, "--vector-store", milvus_server.vector_store("two"))
    options = ("--catalog-url", str(datadir.catalog_url_override), "--production", "--no-rate-limits")
    with whysim_server(datadir.root, *options) as first, whysim_server(datadir.root, *options) as second:
        servers = (first, second)
        assert {server.get_json("/api/stats")[1]["index_type"] for server in servers} == {"flat"}
        engine = open_catalog_engine(datadir.catalog_url)
        ids = [info.id for info in Catalog(engine).list_images(limit=100)]
        engine.dispose()
        before = [search_by_id(first, image_id) for image_id in ids]

        result = CliRunner().invoke(cli, ["compact", "--data-dir", str(datadir.root), "--catalog-url",
                                          str(datadir.catalog_url_override), "--index-type", "hnsw"],
                                    catch_exceptions=False)
        assert result.exit_code == 0, result.output
        deadline = time.monotonic() + 60
        while {server.get_json("/api/stats")[1]["index_type"] for server in servers} != {"hnsw"}:
            assert time.monotonic() < deadline, "a server still serves the old generation"
            time.sleep(0.1)
        for server in servers:  # the new generation, whole: the same answers from both
            assert [search_by_id(server, image_id) for image_id in ids] == before
