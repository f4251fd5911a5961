"""One real index of generated images, built once per session with the real `whysim index`,
and a Flask app serving it. Tests that change an index work on a copy (`index_copy`)."""
from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import CATALOG_BACKENDS
from flask import Flask
from flask.testing import FlaskClient
from postgres_server import PostgresServer

from search_layer.collection import build_collection, run_index
from whysim.indexer.catalog.database import open_catalog_engine
from whysim.indexer.catalog.repository import Catalog, ImageInfo
from whysim.indexer.datadir import DataDir
from whysim.search.serving.engine import SearchEngine
from whysim.webui.app import create_app


@pytest.fixture(scope="session")
def collection(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """11 indexable images (5 blobs, 5 stripes, 1 EXIF-rotated), 1 byte-identical copy, 1 truncated file."""
    return build_collection(tmp_path_factory.mktemp("search") / "photos")


# For tests of what no catalog query decides (connection handling, headers, rate limits, the
# upload store on disk): they run once, on the SQLite catalog, instead of once per catalog.
ANY_CATALOG = pytest.mark.parametrize("built_index", ["sqlite"], indirect=True)


@pytest.fixture(scope="session", params=CATALOG_BACKENDS)
def built_index(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, collection: Path) -> DataDir:
    """The shared index, once with a SQLite catalog and once with a PostgreSQL one."""
    url = None
    if request.param == "postgres":
        server: PostgresServer = request.getfixturevalue("postgres_server")
        url = server.url(server.create_database("api"))
    datadir = DataDir(tmp_path_factory.mktemp("index") / "data", url)
    run_index(collection, datadir)
    return datadir


@pytest.fixture(scope="session")
def images(built_index: DataDir) -> dict[str, ImageInfo]:
    """Every catalogued image by its relative path."""
    engine = open_catalog_engine(built_index.catalog_url)
    try:
        return {info.path: info for info in Catalog(engine).list_images(None, 0, 1000)}
    finally:
        engine.dispose()


@pytest.fixture
def index_copy(request: pytest.FixtureRequest, built_index: DataDir, tmp_path: Path) -> DataDir:
    """A private copy of the built index (same collection, same kind of catalog), safe to change."""
    url = built_index.catalog_url_override
    if url is not None:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        name = server.copy_database(server.database_of(url))
        request.addfinalizer(lambda: server.drop_database(name))
        url = server.url(name)
    copy = DataDir(tmp_path / "data-copy", url)
    shutil.copytree(built_index.root, copy.root, ignore=shutil.ignore_patterns("thumbnails", "writer.lock"))
    return copy


@pytest.fixture(scope="session")
def engine(built_index: DataDir) -> Iterator[SearchEngine]:
    opened = SearchEngine.open(built_index)
    yield opened
    opened.close()


@pytest.fixture(scope="session")
def make_app() -> Callable[..., Flask]:
    def build(datadir: DataDir, **config: object) -> Flask:
        # These tests call the API hundreds of times from one address: per-client rate limits off,
        # unless a test turns them on (test_fair_use.py does).
        return create_app({"TESTING": True, "WHYSIM_DATA_DIR": str(datadir.root), "WHYSIM_RATE_LIMITS": False,
                           "WHYSIM_CATALOG_URL": datadir.catalog_url_override, **config})

    return build


@pytest.fixture(scope="session")
def app(make_app: Callable[..., Flask], built_index: DataDir) -> Flask:
    return make_app(built_index)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
