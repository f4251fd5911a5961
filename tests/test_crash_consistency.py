"""`kill -9` of `whysim index` at random points: the catalog and the vector store stay
consistent every time, and a rerun completes with nothing lost or duplicated. Runs with each
storage setup: SQLite or PostgreSQL with a FAISS file, PostgreSQL with Milvus Lite.

Each trial runs the real CLI in a child process with one-image batches and two-image chunks
(a commit every two images), kills it after a random number of index saves plus a random
delay (or at a random moment right after it took the writer lock), checks the invariant the
writer keeps on what it left (and, in add-only runs, over and over while it ran), reruns to
completion and compares with a clean run. (Milvus Lite opens its file in one process at a
time, so there the invariant is checked after the kill only.)
"""
from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import ALL_STORAGE, FAISS_STORAGE, STORAGE, encode, make_picture, vector_store_option
from whysim_cli import catalog_query, stored_vectors

from whysim.indexer.catalog.database import create_catalog_engine
from whysim.indexer.catalog.repository import Catalog
from whysim.indexer.datadir import DataDir
from whysim.indexer.vectors import VectorStore
from whysim.webui.cli import cli

SMALL = ["--input-size", "64", "--workers", "0", "--no-progress"]
MANY_COMMITS = ["--chunk-size", "2", "--batch-size", "1"]
TRIALS = 4
SERVER_TRIALS = (0, 3)
PICTURES = 48

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Row:
    path: str
    status: str
    sha256: str | None
    duplicate_of: int | None


@dataclass(frozen=True)
class DiskState:
    vector_ids: list[int]  # as stored, repeats included
    vectors: dict[int, np.ndarray]
    rows: dict[int, Row]

    def ids_with(self, status: str) -> set[int]:
        return {image_id for image_id, row in self.rows.items() if row.status == status}


def read_rows(datadir: DataDir) -> dict[int, Row]:
    """Empty while there is no catalog or the schema's transaction has not committed."""
    return {image_id: Row(path, status, sha, duplicate_of) for image_id, path, status, sha, duplicate_of
            in catalog_query(datadir, "SELECT id, path, status, sha256, duplicate_of_id FROM images")}


def read_vectors(datadir: DataDir) -> VectorStore | None:
    """The FAISS file (read directly: the catalog may be in use), else the Milvus collection
    the catalog names, when the indexer got as far as naming one."""
    if datadir.vectors_path.exists():
        return VectorStore.load(datadir.vectors_path)  # must always be a whole index
    if not catalog_query(datadir, "SELECT value FROM settings WHERE key = 'vector_store'"):
        return None
    engine = create_catalog_engine(datadir.catalog_url)
    try:
        return stored_vectors(datadir, Catalog(engine))
    finally:
        engine.dispose()


def save_stamp(datadir: DataDir) -> object | None:
    """Changes with every save of the vector store: the FAISS file's identity, or Milvus's generation."""
    try:
        stat = os.stat(datadir.vectors_path)
        return (stat.st_ino, stat.st_mtime_ns)
    except FileNotFoundError:
        rows = catalog_query(datadir, "SELECT value FROM settings WHERE key = 'vector_generation'")
        return rows[0][0] if rows else None


def read_state(datadir: DataDir) -> DiskState:
    """Rows first, then vectors: while an indexer only adds, every row seen as indexed must
    then have its vector in the store (it was saved before the row was committed)."""
    rows = read_rows(datadir)
    vector_ids: list[int] = []
    vectors: dict[int, np.ndarray] = {}
    store = read_vectors(datadir)
    if store is not None:
        vector_ids = store.ids().tolist()
        vectors = {image_id: store.reconstruct(image_id) for image_id in vector_ids}
    return DiskState(vector_ids, vectors, rows)


def check_after_kill(state: DiskState, ids_ever: set[int] | None = None, running: bool = False,
                     repeats_allowed: bool = False) -> None:
    """What the writer guarantees at every instant: vectors first, then rows. (While it runs,
    rows read before vectors may miss rows added just after: that part waits for the kill.)
    `repeats_allowed`: Milvus Lite may replay an upsert when reopened after a kill and hold an
    id twice until the next run merges the copies (check_complete then requires one each)."""
    assert repeats_allowed or len(state.vector_ids) == len(set(state.vector_ids)), "a vector is stored twice"
    assert state.ids_with("indexed") <= set(state.vector_ids), "a row says indexed but its vector is not saved"
    known = set(state.rows) | (ids_ever or set())
    assert running or set(state.vector_ids) <= known, "a vector belongs to no image the catalog ever had"
    paths = [row.path for row in state.rows.values()]
    assert len(paths) == len(set(paths)), "a file has two rows"


def check_complete(state: DiskState, root: Path, reference: dict[str, np.ndarray]) -> None:
    """After a rerun: one row per file, one vector per indexed row, the right vector for each."""
    files = {p.relative_to(root).as_posix(): p for p in root.rglob("*") if p.is_file()}
    by_path = {row.path: (image_id, row) for image_id, row in state.rows.items()}
    assert set(by_path) == set(files) and len(by_path) == len(state.rows)
    assert sorted(state.vector_ids) == sorted(state.ids_with("indexed"))
    statuses = {row.status for row in state.rows.values()}
    assert statuses <= {"indexed", "duplicate", "failed"}, statuses  # nothing left pending
    assert [row.path for row in state.rows.values() if row.status == "failed"] == ["broken/truncated.jpg"]
    for path, (image_id, row) in by_path.items():
        assert row.sha256 == hashlib.sha256(files[path].read_bytes()).hexdigest(), path
        if row.status == "duplicate":
            original = state.rows[row.duplicate_of]  # type: ignore[index]
            assert original.status == "indexed" and original.sha256 == row.sha256
        if row.status == "indexed":
            expected = reference[row.sha256]  # type: ignore[index]
            assert float(np.dot(state.vectors[image_id], expected)) > 0.999, path
    indexed_shas = [row.sha256 for row in state.rows.values() if row.status == "indexed"]
    assert len(indexed_shas) == len(set(indexed_shas)), "the same content was embedded twice"


def write_picture(root: Path, seed: int) -> None:
    kind = "stripes" if seed % 2 else "blobs"
    (root / kind).mkdir(parents=True, exist_ok=True)
    (root / kind / f"{kind}_{seed:03d}.jpg").write_bytes(encode(make_picture(seed, kind=kind)))


def build_collection(root: Path, seeds: range) -> Path:
    for seed in seeds:
        write_picture(root, seed)
    (root / "copies").mkdir(parents=True)
    first = sorted((root / "blobs").iterdir())[0]
    shutil.copyfile(first, root / "copies" / "copy_a.jpg")
    shutil.copyfile(first, root / "copies" / "copy_b.jpg")
    (root / "broken").mkdir()
    whole = encode(make_picture(999))
    (root / "broken" / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    return root


def location(datadir: DataDir) -> list[str]:
    """The command-line options naming this data directory and its catalog."""
    url = ["--catalog-url", datadir.catalog_url_override] if datadir.catalog_url_override else []
    return ["--data-dir", str(datadir.root), *url]


def index_in_process(root: Path, datadir: DataDir, *extra: str) -> None:
    result = CliRunner().invoke(cli, ["index", str(root), *location(datadir), *SMALL, *extra],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output


@dataclass(frozen=True)
class Kill:
    after_saves: int  # 0: at a random moment after the writer lock is taken
    delay_s: float


# Trials 0 and 2 add to an empty index, 1 and 3 prune and add on an existing one. Right after
# the lock: reconcile, prune and the first chunk; after N saves: mid-run, between an index save
# and its catalog commit or just after it.
KILL_POINTS = [
    lambda rng: Kill(after_saves=rng.randint(2, 20), delay_s=rng.uniform(0, 0.03)),
    lambda rng: Kill(after_saves=0, delay_s=rng.uniform(0, 0.3)),
    lambda rng: Kill(after_saves=0, delay_s=rng.uniform(0, 0.3)),
    lambda rng: Kill(after_saves=rng.randint(1, 6), delay_s=rng.uniform(0, 0.03)),
]
assert len(KILL_POINTS) == TRIALS


def killed_run(root: Path, datadir: DataDir, kill: Kill, *extra: str, watch: bool = False) -> tuple[bool, int]:
    """Runs `whysim index` in a child process and SIGKILLs it: (whether it was still running,
    how many times the on-disk invariant was checked while it ran; `watch`: add-only runs)."""
    process = subprocess.Popen([sys.executable, "-c", "from whysim.webui.cli import main; main()", "index", str(root),
                                *location(datadir), *SMALL, *MANY_COMMITS, *extra],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    lock = datadir.root / "writer.lock"
    stamps: list[object] = []
    checks = 0
    deadline = time.monotonic() + 120
    while process.poll() is None and time.monotonic() < deadline:
        if watch:
            check_after_kill(read_state(datadir), running=True)
            checks += 1
        if kill.after_saves == 0:
            if lock.exists() and lock.read_text() == str(process.pid):
                break
        else:
            stamp = save_stamp(datadir)
            if stamp is not None and (not stamps or stamps[-1] != stamp):
                stamps.append(stamp)
            if len(stamps) > kill.after_saves:
                break
        time.sleep(0.002)
    time.sleep(kill.delay_s)
    if process.poll() is not None:
        return False, checks
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    return True, checks


@pytest.mark.parametrize("storage", ALL_STORAGE, indirect=True)
def test_kill_9_at_random_points_loses_and_duplicates_nothing(tmp_path: Path, new_catalog_url, storage,
                                                              request: pytest.FixtureRequest) -> None:
    everything = build_collection(tmp_path / "everything", range(PICTURES + 16))
    clean = DataDir(tmp_path / "clean")
    index_in_process(everything, clean)
    clean_state = read_state(clean)
    reference = {row.sha256: clean_state.vectors[image_id] for image_id, row in clean_state.rows.items()
                 if row.status == "indexed"}

    interrupted = 0
    # A Milvus server costs seconds a collection: there, one add-only and one prune trial.
    trials = SERVER_TRIALS if STORAGE[storage][1] == "milvus-server" else range(TRIALS)
    for trial in trials:
        rng = random.Random(trial)
        root = build_collection(tmp_path / f"trial{trial}" / "photos", range(PICTURES))
        datadir = DataDir(tmp_path / f"trial{trial}" / "data", new_catalog_url())
        store_option = vector_store_option(storage, tmp_path / f"trial{trial}", request)
        extra: list[str] = ["--vector-store", store_option] if store_option else []
        # A FAISS file or a Milvus server can be read while the indexer writes (a Lite file cannot).
        watch = store_option is None or store_option.startswith("milvus://")
        ids_before: set[int] = set()
        if trial % 2:  # a prune run: some files gone, some new, on an existing index
            index_in_process(root, datadir, *extra)
            ids_before = set(read_state(datadir).rows)
            for path in sorted(root.rglob("*.jpg"))[::6]:
                if path.parent.name in ("blobs", "stripes"):
                    path.unlink()
            for seed in range(PICTURES, PICTURES + 16):
                write_picture(root, seed)
            extra.append("--prune")
            watch = False
        kill = KILL_POINTS[trial](rng)
        killed, checks = killed_run(root, datadir, kill, *extra, watch=watch)
        interrupted += killed
        after_kill = read_state(datadir)
        check_after_kill(after_kill, ids_before, repeats_allowed=store_option is not None)
        index_in_process(root, datadir, *extra)
        final = read_state(datadir)
        check_complete(final, root, reference)
        assert not list(datadir.root.glob(".*.tmp")), "a killed save left its temporary file behind"
        print(f"trial {trial}: {'killed' if killed else 'finished before the kill'} ({kill}) with "
              f"{len(after_kill.vector_ids)} vectors and {len(after_kill.ids_with('indexed'))} indexed rows "
              f"on disk ({checks} checks while it ran); after the rerun {len(final.vector_ids)} vectors, "
              f"{len(final.rows)} rows")
    assert interrupted >= len(trials) - 1, f"only {interrupted} of {len(trials)} runs were killed before they finished"


@pytest.mark.parametrize("storage", FAISS_STORAGE, indirect=True)
def test_a_rerun_removes_what_a_killed_save_left_behind(make_collection, datadir: DataDir) -> None:
    root = make_collection({"blobs": 2, "stripes": 2})
    index_in_process(root, datadir)
    leftover = datadir.root / f".{datadir.vectors_path.name}.424242.tmp"
    leftover.write_bytes(b"half an index")  # as `kill -9` during VectorStore.save leaves it
    write_picture(root, 77)
    index_in_process(root, datadir)
    assert not leftover.exists()
    assert len(read_state(datadir).vector_ids) == 5
