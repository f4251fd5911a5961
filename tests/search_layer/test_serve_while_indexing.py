"""`whysim serve --production` keeps answering while `whysim index` adds and then prunes images
in the same data directory, picks up each new index without a restart, and never reports a
hit that belongs to no catalog row."""
from __future__ import annotations

import json
import random
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from benchmarks.http_load import LoadClient, Workload, multipart_image, whysim_server
from conftest import MILVUS_SERVER, encode, make_picture

from search_layer.collection import PICTURE_SIZE, SMALL_MODEL, run_index
from whysim.indexer.datadir import VECTOR_STORE_ENV, DataDir

pytestmark = pytest.mark.slow
ADDED = 24


def catalog_paths(datadir: DataDir) -> dict[int, str]:
    with sqlite3.connect(f"file:{datadir.root / 'catalog.sqlite3'}?mode=ro", uri=True) as connection:
        return dict(connection.execute("SELECT id, path FROM images"))


def index_process(root: Path, datadir: DataDir, *extra: str) -> None:
    """The real CLI in its own process, committing every two images."""
    done = subprocess.run([sys.executable, "-c", "from whysim.webui.cli import main; main()", "index", str(root),
                           "--data-dir", str(datadir.root), *SMALL_MODEL, "--chunk-size", "2", "--batch-size", "2",
                           *extra], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


def wait_for_vectors(server, count: int, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while (vectors := server.get_json("/api/stats")[1]["vectors"]) != count:
        assert time.monotonic() < deadline, f"the server still serves {vectors} vectors, not {count}"
        time.sleep(0.1)


@pytest.mark.parametrize("store", ["faiss", pytest.param("milvus-server", marks=MILVUS_SERVER)])
def test_serving_while_indexing_adds_and_prunes(tmp_path: Path, store: str, request: pytest.FixtureRequest,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """On FAISS, and on a Milvus server: `whysim serve` searches the collection that `whysim index`
    upserts into and deletes from in another process (what Milvus Lite cannot do)."""
    if store == "milvus-server":  # every command of the test, and its child processes, use it
        monkeypatch.setenv(VECTOR_STORE_ENV, request.getfixturevalue("milvus_server").vector_store("serving"))
    root = tmp_path / "photos"
    for index in range(8):
        kind = "stripes" if index % 2 else "blobs"
        (root / kind).mkdir(parents=True, exist_ok=True)
        (root / kind / f"{index:02d}.jpg").write_bytes(encode(make_picture(300 + index, PICTURE_SIZE, kind)))
    datadir = DataDir(tmp_path / "data")
    run_index(root, datadir)
    first_ids = sorted(catalog_paths(datadir))
    uploads = [encode(make_picture(700 + seed, PICTURE_SIZE)) for seed in range(6)]

    statuses: Counter[int] = Counter()
    hits_seen: dict[int, set[str]] = {}
    failures: list[str] = []
    stop = threading.Event()

    def keep_searching(port: int, seed: int) -> None:
        client = LoadClient(port, Workload(first_ids, uploads, k=20), random.Random(seed))
        while not stop.is_set():
            try:
                if seed % 2:
                    body = json.dumps({"image_id": client.rng.choice(first_ids), "k": 20}).encode()
                    answer = client.request("POST", "/api/search", body, "application/json")
                else:
                    answer = client.request("POST", "/api/search", *multipart_image(client.rng.choice(uploads), 20))
                statuses[200] += 1
                for hit in answer["hits"]:
                    hits_seen.setdefault(hit["id"], set()).add(hit["path"])
            except Exception as exc:  # noqa: BLE001 - the main thread reports every failure
                failures.append(f"{type(exc).__name__}: {exc}")

    # One address uploads again and again: rate limits off (this test is about index swaps).
    with whysim_server(datadir.root, "--production", "--threads", "4", "--no-rate-limits") as server:
        threads = [threading.Thread(target=keep_searching, args=(server.port, seed)) for seed in range(3)]
        for thread in threads:
            thread.start()
        try:
            for index in range(ADDED):
                (root / "new").mkdir(exist_ok=True)
                (root / "new" / f"{index:02d}.jpg").write_bytes(encode(make_picture(400 + index, PICTURE_SIZE)))
            index_process(root, datadir)
            wait_for_vectors(server, 8 + ADDED)
            every_id = catalog_paths(datadir)
            shutil.rmtree(root / "new")
            index_process(root, datadir, "--prune")
            wait_for_vectors(server, 8)
            time.sleep(0.5)  # a few more searches on the final index
        finally:
            stop.set()
            for thread in threads:
                thread.join()
        health = server.get_json("/api/health")[1]
    assert not failures, failures[:5]
    assert statuses[200] > 20
    assert health["vectors"] == 8
    assert set(hits_seen) <= set(every_id), "a hit without a catalog row"
    assert all(paths == {every_id[image_id]} for image_id, paths in hits_seen.items())
    assert set(hits_seen) - set(first_ids), "no search ever saw an image added while serving"
