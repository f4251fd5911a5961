"""Shared fixtures: generated image collections and fresh data directories (nothing from ../shared)."""
from __future__ import annotations

import io
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from milvus_server import MilvusServerUnavailable, MilvusTestServer, start_milvus_server
from PIL import Image
from postgres_server import PostgresServer, PostgresUnavailable, start_server

from whysim.indexer.datadir import CATALOG_URL_ENV, VECTOR_STORE_ENV, DataDir

REPO_ROOT = Path(__file__).resolve().parent.parent
SAMPLES = REPO_ROOT / "samples" / "flowers"


def make_picture(seed: int, size: tuple[int, int] = (96, 72), kind: str = "blobs") -> Image.Image:
    """A deterministic synthetic photo: coloured blobs or stripes on a gradient."""
    rng = np.random.default_rng(seed)
    width, height = size
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(0, 255, 3)
    canvas = np.stack([base[c] * (0.5 + 0.5 * x / width) for c in range(3)], axis=-1)
    if kind == "stripes":
        period = rng.uniform(6, 18)
        mask = (np.sin(2 * np.pi * (x + y * rng.uniform(-1, 1)) / period) > 0)[..., None]
        canvas = np.where(mask, rng.uniform(0, 255, 3), canvas)
    else:
        for _ in range(4):
            cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(6, 24)
            blob = ((x - cx) ** 2 + (y - cy) ** 2 < r * r)[..., None]
            canvas = np.where(blob, rng.uniform(0, 255, 3), canvas)
    return Image.fromarray(canvas.clip(0, 255).astype(np.uint8))


def encode(image: Image.Image, fmt: str = "JPEG", **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


@pytest.fixture
def make_collection(tmp_path: Path) -> Callable[..., Path]:
    """Builds a class-per-folder collection of generated JPEGs; returns its root."""

    def build(classes: dict[str, int] | None = None, name: str = "photos") -> Path:
        root = tmp_path / name
        classes = classes or {"blobs": 4, "stripes": 4}
        seed = 0
        for label, count in classes.items():
            (root / label).mkdir(parents=True, exist_ok=True)
            for index in range(count):
                seed += 1
                kind = "stripes" if "stripe" in label else "blobs"
                (root / label / f"{label}_{index:03d}.jpg").write_bytes(encode(make_picture(seed, kind=kind)))
        return root

    return build


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL server for the whole run (skips, saying why, without the binaries)."""
    try:
        server = start_server()
    except PostgresUnavailable as exc:
        pytest.skip(f"no PostgreSQL server for the catalog tests: {exc}")
    yield server
    server.stop()


# Under pytest-xdist (`make test`) the controller starts the one Milvus server before its workers,
# which inherit its port (or why it could not start): the bundled server's embedded etcd listens
# on fixed ports, so a second server on the machine panics at start.
SHARED_MILVUS_PORT_ENV = "WHYSIM_TEST_MILVUS_PORT"
SHARED_MILVUS_UNAVAILABLE_ENV = "WHYSIM_TEST_MILVUS_UNAVAILABLE"
SHARED_MILVUS = pytest.StashKey[MilvusTestServer]()


def pytest_sessionstart(session: pytest.Session) -> None:
    """The xdist controller's part (xdist starts its workers after this hook)."""
    if not getattr(session.config.option, "numprocesses", None) or os.environ.get("PYTEST_XDIST_WORKER"):
        return
    try:
        server = start_milvus_server()
    except MilvusServerUnavailable as exc:
        os.environ[SHARED_MILVUS_UNAVAILABLE_ENV] = str(exc)
        return
    session.config.stash[SHARED_MILVUS] = server
    os.environ[SHARED_MILVUS_PORT_ENV] = str(server.port)


def pytest_sessionfinish(session: pytest.Session) -> None:
    server = session.config.stash.get(SHARED_MILVUS, None)
    if server is not None:
        server.stop()


@pytest.fixture(scope="session")
def milvus_server() -> Iterator[MilvusTestServer]:
    """One throwaway Milvus standalone server for the whole run: the xdist controller's, or one
    this process starts (skips, saying why, where the bundled server cannot run)."""
    if port := os.environ.get(SHARED_MILVUS_PORT_ENV):
        yield MilvusTestServer(int(port))
        return
    if reason := os.environ.get(SHARED_MILVUS_UNAVAILABLE_ENV):
        pytest.skip(f"no Milvus server for the Milvus server tests: {reason}")
    try:
        server = start_milvus_server()
    except MilvusServerUnavailable as exc:
        pytest.skip(f"no Milvus server for the Milvus server tests: {exc}")
    yield server
    server.stop()


CATALOG_BACKENDS = ["sqlite", "postgres"]
# Catalog and vector store of the indexer suites: the catalogs with FAISS, and Milvus (Lite, and
# a Milvus server) with a PostgreSQL catalog (the pairing for more than one machine; each part is
# independent).
STORAGE = {"sqlite": ("sqlite", "faiss"), "postgres": ("postgres", "faiss"), "postgres-milvus": ("postgres", "milvus"),
           "postgres-milvus-server": ("postgres", "milvus-server")}
FAISS_STORAGE = ["sqlite", "postgres"]
# The storage suites run on SQLite + FAISS (the single-machine default) and PostgreSQL + Milvus
# Lite (the scale-out pairing, which covers the PostgreSQL catalog's code); PostgreSQL + FAISS
# runs where FAISS files are the subject (FAISS_STORAGE). Every collection a Milvus server
# creates costs it ~3 s (loading), so the server runs a chosen part of the storage suites,
# `@pytest.mark.parametrize("storage", ALL_STORAGE, indirect=True)`: the first run and rerun,
# interruption, kill -9 (two of its trials), refresh over HTTP.
DEFAULT_STORAGE = ["sqlite", "postgres-milvus"]
ALL_STORAGE = [*DEFAULT_STORAGE, "postgres-milvus-server"]


@pytest.fixture(params=DEFAULT_STORAGE)
def storage(request: pytest.FixtureRequest) -> str:
    """The test's catalog + vector store; a test for FAISS files alone narrows it with
    `@pytest.mark.parametrize("storage", FAISS_STORAGE, indirect=True)`, one that runs on a
    Milvus server too widens it with ALL_STORAGE."""
    return request.param


@pytest.fixture
def new_catalog_url(request: pytest.FixtureRequest, storage: str) -> Callable[[], str | None]:
    """Makes catalogs of the test's backend: None (SQLite inside each data directory) or the
    URL of a fresh database on the session's PostgreSQL server, dropped after the test."""
    if STORAGE[storage][0] == "sqlite":
        return lambda: None
    server: PostgresServer = request.getfixturevalue("postgres_server")

    def create() -> str:
        name = server.create_database()
        request.addfinalizer(lambda: server.drop_database(name))
        return server.url(name)

    return create


def vector_store_option(storage: str, place: Path, request: pytest.FixtureRequest) -> str | None:
    """The --vector-store value of a setup: its Milvus Lite file under `place`, or a new
    collection on the session's Milvus server."""
    engine = STORAGE[storage][1]
    if engine == "milvus-server":
        return request.getfixturevalue("milvus_server").vector_store()
    return f"milvus:{place / 'milvus' / 'vectors.db'}" if engine == "milvus" else None


@pytest.fixture
def vector_store(storage: str, tmp_path: Path, request: pytest.FixtureRequest) -> str | None:
    """The test's --vector-store value (None: FAISS in the data directory)."""
    return vector_store_option(storage, tmp_path, request)


@pytest.fixture
def catalog_url(new_catalog_url: Callable[[], str | None], vector_store: str | None,
                monkeypatch: pytest.MonkeyPatch) -> str | None:
    """The test's catalog: None for SQLite inside the data directory, else a PostgreSQL URL.

    The URL goes into $WHYSIM_CATALOG_URL and the vector store into $WHYSIM_VECTOR_STORE, so
    every `whysim` command a test runs (in process or as a child process) uses them, exactly
    as for a user who exported them.
    """
    url = new_catalog_url()
    for name, value in ((CATALOG_URL_ENV, url), (VECTOR_STORE_ENV, vector_store)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    return url


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[str]:
    """One local Ray cluster on two CPUs for the whole run (starting one takes ~25 s here);
    in-process runs join it, child processes get its address (--ray-address). Always a new one
    ("local"), never another test worker's cluster, which goes when that worker ends."""
    import ray

    from whysim.indexer.pipeline.ray_engine import RAY_ENV

    for name, value in RAY_ENV.items():
        os.environ.setdefault(name, value)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


@pytest.fixture
def datadir(tmp_path: Path, catalog_url: str | None) -> DataDir:
    return DataDir(tmp_path / "data", catalog_url)


@pytest.fixture
def sample_collection(tmp_path: Path) -> Path:
    """A copy of a few bundled real photos (two classes), safe to modify."""
    root = tmp_path / "samples"
    for label in ("daisy", "sunflower"):
        shutil.copytree(SAMPLES / label, root / label)
    return root
