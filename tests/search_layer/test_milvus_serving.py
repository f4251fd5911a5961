"""Serving from Milvus (PostgreSQL catalog): the served index notices each new generation the
indexer saves (a counter in the catalog's settings, as the FAISS file's stamp), picks up
added images and drops pruned ones without a restart."""
from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner
from conftest import encode, make_picture

from search_layer.collection import PICTURE_SIZE, SMALL_MODEL
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
