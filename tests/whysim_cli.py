"""Helpers for tests that drive the real `whysim` command and read back what it stored."""
from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from click.testing import CliRunner, Result
from sqlalchemy import create_engine, exc, pool, text

from whysim.indexer.catalog.database import open_catalog_engine
from whysim.indexer.catalog.repository import Catalog, ImageInfo
from whysim.indexer.datadir import DataDir
from whysim.indexer.vector_stores.choice import open_location
from whysim.indexer.vectors import VectorStore
from whysim.webui.cli import cli

# Where the model's input size does not matter: a tiny input and no worker processes.
SMALL = ("--input-size", "64", "--workers", "0", "--no-progress")


def whysim(*args: str, exit_code: int = 0) -> Result:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == exit_code, result.output
    return result


def whysim_json(*args: str) -> dict[str, Any]:
    return json.loads(whysim(*args, "--json").stdout)


def index_json(root: Path, datadir: DataDir, *extra: str) -> dict[str, Any]:
    """`whysim index ROOT --json` with the small model settings unless `extra` overrides them."""
    return whysim_json("index", root, "--data-dir", datadir.root, *SMALL, *extra)


@dataclass
class Snapshot:
    """Everything a data directory holds after a run, keyed by image path."""

    images: dict[str, ImageInfo]
    store: VectorStore

    def vector(self, path: str) -> np.ndarray | None:
        return self.store.reconstruct(self.images[path].id)

    def by_status(self, status: str) -> set[str]:
        return {path for path, info in self.images.items() if info.status == status}

    def assert_consistent(self) -> None:
        """Vector ids are exactly the indexed rows; every copy points at an indexed row."""
        ids = self.store.ids().tolist()
        assert len(ids) == len(set(ids)), "an id has two vectors"
        indexed = {info.id for info in self.images.values() if info.status == "indexed"}
        assert set(ids) == indexed
        by_id = {info.id: info for info in self.images.values()}
        for info in self.images.values():
            if info.status == "duplicate":
                assert by_id[info.duplicate_of_id].status == "indexed"
                assert by_id[info.duplicate_of_id].sha256 == info.sha256


def catalog_query(datadir: DataDir, sql: str) -> list[tuple[Any, ...]]:
    """Raw rows from the data directory's catalog (SQLite or PostgreSQL), as another process
    sees them; [] while there is no catalog or no schema yet (a run killed at its start)."""
    if datadir.catalog_url_override is None and not (datadir.root / "catalog.sqlite3").exists():
        return []
    engine = create_engine(datadir.catalog_url, poolclass=pool.NullPool)
    try:
        with engine.connect() as connection:
            return [tuple(row) for row in connection.execute(text(sql))]
    except (exc.OperationalError, exc.ProgrammingError):
        return []  # the schema's transaction has not committed yet
    finally:
        engine.dispose()


@contextmanager
def live_store(datadir: DataDir) -> Iterator[tuple[Any, Any]]:
    """(location, store) of the data directory, as the indexer opens them; closed afterwards."""
    engine = open_catalog_engine(datadir.catalog_url)
    location = open_location(datadir, Catalog(engine))
    try:
        yield location, location.load()
    finally:
        location.close()
        engine.dispose()


def stored_vectors(datadir: DataDir, catalog: Catalog) -> VectorStore | None:
    """What the data directory's vector store holds, whatever engine holds it: the FAISS file
    as saved, or an exact in-memory copy of a Milvus collection (whose client is then closed,
    so that other processes can open a Milvus Lite file). None when nothing is stored yet."""
    location = open_location(datadir, catalog)
    try:
        if not location.exists():
            return None
        store = location.load()
        if isinstance(store, VectorStore):
            return store
        copy = VectorStore.build(*store.entries(), "flat")
        copy.whitening = store.whitening
        return copy
    finally:
        location.close()


def snapshot(datadir: DataDir) -> Snapshot:
    engine = open_catalog_engine(datadir.catalog_url)
    try:
        catalog = Catalog(engine)
        rows = catalog.list_images(status=None, limit=1_000_000)
        store = stored_vectors(datadir, catalog)
    finally:
        engine.dispose()
    assert store is not None, "nothing is stored in the vector store"
    return Snapshot({info.path: info for info in rows}, store)
