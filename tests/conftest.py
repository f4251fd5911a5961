"""Shared fixtures: generated image collections and fresh data directories (nothing from ../shared)."""
from __future__ import annotations

import io
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from milvus_server import (
    MilvusServerLease,
    MilvusServerUnavailable,
    MilvusTestServer,
    SharedMilvusServer,
    note_needed,
    shared_server,
)
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


# The tests that need the Milvus test server (the `milvus_server` fixture, or a parameter marked
# MILVUS_SERVER) run first, and the server is stopped once they are done: it costs every other
# test CPU while it runs. Its embedded etcd binds fixed ports, so one server runs on a machine at a
# time: under pytest-xdist (`make test`) the controller runs it for both workers.
MILVUS_SERVER = pytest.mark.milvus_server
SHARED_MILVUS_ENV = "WHYSIM_TEST_MILVUS_DIR"
SHARED_MILVUS: list[SharedMilvusServer] = []  # the controller's
MILVUS_SERVER_LEASE = MilvusServerLease()  # a run without workers


def is_xdist_controller(config: pytest.Config) -> bool:
    return bool(getattr(config.option, "numprocesses", None)) and not os.environ.get("PYTEST_XDIST_WORKER")


def pytest_sessionstart(session: pytest.Session) -> None:
    """The controller starts the server while its workers start (they inherit the folder)."""
    if is_xdist_controller(session.config):
        folder = Path(tempfile.mkdtemp(prefix="whysim-milvus-share-"))
        os.environ[SHARED_MILVUS_ENV] = str(folder)
        SHARED_MILVUS.append(SharedMilvusServer(folder))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """In the controller, every test's reports from every worker; in a worker, its own."""
    if SHARED_MILVUS and report.when == "teardown":
        SHARED_MILVUS[0].finished(report.nodeid)


def pytest_sessionfinish() -> None:
    for shared in SHARED_MILVUS:
        shared.stop()
        shutil.rmtree(shared.folder, ignore_errors=True)
    MILVUS_SERVER_LEASE.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "milvus_server" in item.fixturenames:
            item.add_marker(MILVUS_SERVER)
    items[:] = sorted(items, key=lambda item: item.get_closest_marker("milvus_server") is None)  # stable


def pytest_collection_finish(session: pytest.Session) -> None:
    if folder := os.environ.get(SHARED_MILVUS_ENV):
        note_needed(Path(folder), [item.nodeid for item in session.items if item.get_closest_marker("milvus_server")])


@pytest.hookimpl(trylast=True)  # after the test's fixtures are torn down
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    if nextitem is None or not nextitem.get_closest_marker("milvus_server"):
        MILVUS_SERVER_LEASE.stop()


@pytest.fixture
def milvus_server() -> Iterator[MilvusTestServer]:
    """The throwaway Milvus standalone server (skips, saying why, where the bundled server cannot
    run); the collections the test named on it are dropped after it."""
    try:
        folder = os.environ.get(SHARED_MILVUS_ENV)
        server = shared_server(Path(folder)) if folder else MILVUS_SERVER_LEASE.get()
    except MilvusServerUnavailable as exc:
        pytest.skip(f"no Milvus server for the Milvus server tests: {exc}")
    yield server
    server.drop_collections()


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
# creates costs it 1-2 s (loading), so the server runs a chosen part of the storage suites,
# `@pytest.mark.parametrize("storage", ALL_STORAGE, indirect=True)`: the first run and rerun,
# interruption, kill -9 (two of its trials), refresh over HTTP.
DEFAULT_STORAGE = ["sqlite", "postgres-milvus"]
ALL_STORAGE = [*DEFAULT_STORAGE, pytest.param("postgres-milvus-server", marks=MILVUS_SERVER)]


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


# Starts a cluster, prints its address, keeps it until its stdin closes.
RAY_HEAD = ("import sys, ray; ray.init(address='local', num_cpus=2, include_dashboard=False, log_to_driver=False, "
            "configure_logging=False); print(ray.get_runtime_context().gcs_address, flush=True); sys.stdin.read()")


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One local Ray cluster on two CPUs for the whole run (starting one takes ~25 s here), of
    this test process alone (never another worker's, which goes when that worker ends); runs get
    its address (--ray-address). It is started by a fresh process: Ray starts its servers with a
    Python preexec_fn, which can hang in a child forked from a process with other threads (a
    test worker's gRPC clients, once it has used Milvus: the GCS server then never came up)."""
    from whysim.indexer.pipeline.ray_engine import RAY_ENV

    # Ray authenticates with a token, which processes started by the cluster's own process inherit;
    # one of this run's own, given to the cluster, this process and its children.
    os.environ.update({"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)})
    log = tmp_path_factory.mktemp("ray") / "head.log"
    with log.open("w") as errors:
        head = subprocess.Popen([sys.executable, "-c", RAY_HEAD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=errors, text=True, env={**RAY_ENV, **os.environ})
    address = head.stdout.readline().strip() if head.stdout else ""
    try:
        if not address:
            head.kill()
            pytest.fail(f"the test Ray cluster did not start: {log.read_text()[-2000:]}")
        yield address
    finally:
        import ray

        ray.shutdown()  # the runs in this process joined it
        if head.poll() is None:
            head.communicate(timeout=120)  # closes its stdin: it shuts the cluster down


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
