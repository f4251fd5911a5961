"""Chunks written on a background thread keep the catalog and the vector store in step."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import FAISS_STORAGE

from whysim.indexer.catalog.database import open_catalog_engine
from whysim.indexer.catalog.repository import Catalog
from whysim.indexer.catalog.schema import ImageStatus
from whysim.indexer.datadir import DataDir
from whysim.indexer.pipeline.background_writing import BackgroundChunkWriter
from whysim.indexer.pipeline.planning import WorkItem
from whysim.indexer.pipeline.reading import ReadResult
from whysim.indexer.vector_stores.faiss_location import FaissLocation
from whysim.indexer.vectors import VectorStore
from whysim.webui.cli import cli


def pending_items(datadir: DataDir, count: int) -> tuple[Catalog, list[WorkItem]]:
    catalog = Catalog(open_catalog_engine(datadir.ensure().catalog_url))
    collection = catalog.collection_id(datadir.root / "photos")
    ids = catalog.add_pending(collection, [(f"p{i}.jpg", 10, 1, None) for i in range(count)])
    return catalog, [WorkItem(ids[f"p{i}.jpg"], f"p{i}.jpg", 10, 1, None, "pending") for i in range(count)]


def record(writer: BackgroundChunkWriter, items: list[WorkItem]) -> None:
    rng = np.random.default_rng(0)
    for item in items:
        vector = rng.standard_normal(8).astype(np.float32)
        writer.indexed(item, ReadResult(item.image_id, f"sha{item.image_id}", 4, 4, None, None),
                       vector / np.linalg.norm(vector))
        writer.maybe_flush()


@pytest.mark.parametrize("storage", FAISS_STORAGE, indirect=True)
def test_every_chunk_lands_in_both_stores(datadir: DataDir) -> None:
    catalog, items = pending_items(datadir, 50)
    writer = BackgroundChunkWriter(catalog, VectorStore.empty(8), FaissLocation(datadir.vectors_path), chunk_size=3)
    record(writer, items)
    writer.flush()
    writer.close()
    on_disk = VectorStore.load(datadir.vectors_path)
    assert set(on_disk.ids().tolist()) == catalog.ids_with_status(ImageStatus.INDEXED) == {i.image_id for i in items}


@pytest.mark.parametrize("storage", FAISS_STORAGE, indirect=True)
def test_a_failed_write_surfaces_on_the_indexing_thread(datadir: DataDir, tmp_path: Path) -> None:
    catalog, items = pending_items(datadir, 6)
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    writer = BackgroundChunkWriter(catalog, VectorStore.empty(8), FaissLocation(blocker / "vectors.faiss"), chunk_size=2)
    with pytest.raises(OSError):
        record(writer, items)
        writer.close()
    assert catalog.ids_with_status(ImageStatus.INDEXED) == set()  # rows never precede their vectors


@pytest.mark.parametrize("storage", FAISS_STORAGE, indirect=True)
def test_index_with_one_image_chunks(make_collection, datadir: DataDir) -> None:
    root = make_collection({"blobs": 5, "stripes": 5})
    result = CliRunner().invoke(cli, ["index", str(root), "--data-dir", str(datadir.root), "--chunk-size", "1",
                                      "--batch-size", "2", "--json", "--input-size", "64", "--workers", "0",
                                      "--no-progress"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["indexed"] == 10
    catalog = Catalog(open_catalog_engine(datadir.catalog_url))
    assert set(VectorStore.load(datadir.vectors_path).ids().tolist()) == catalog.ids_with_status(ImageStatus.INDEXED)
