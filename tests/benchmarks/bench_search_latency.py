"""Search latency over HTTP on loopback, against the raw FAISS search and the query's embedding.

Builds (once, cached in --work-dir) a data directory with --vectors vectors: a few real photos
embedded with the real model, the rest synthetic unit vectors with catalog rows of their own,
in the index kind `whysim index` would choose for that size. Then serves it with `whysim serve`
in a separate process and measures, in the same run:

  faiss search       VectorStore.search of one stored vector, k=10 (in process)
  embed              the model's forward pass on one query (in process)
  decode + embed     decoding the upload bytes plus the forward pass (in process)
  HTTP by id         POST /api/search {"image_id", "k": 10}
  HTTP by upload     POST /api/search multipart (every upload distinct: no query-cache hits)

and prints p50/p95 and the ratios of the HTTP figures to their in-process baselines.

    .venv/bin/python tests/benchmarks/bench_search_latency.py [--vectors 100000] [--photos DIR]
"""
from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from whysim.indexer.catalog.database import open_catalog_engine
from whysim.indexer.catalog.repository import Catalog
from whysim.indexer.catalog.schema import ImageStatus
from whysim.indexer.datadir import DataDir
from whysim.indexer.imaging import IMAGE_EXTENSIONS
from whysim.indexer.index_kinds import choose_index_kind
from whysim.indexer.model.loading import ModelRequest, build_branch
from whysim.indexer.vectors import VectorStore
from whysim.search.serving.model_host import ModelHost
from whysim.search.serving.pictures import read_picture

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PHOTOS = REPO_ROOT.parent / "shared" / "datasets" / "flowers"
K = 10


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def photo_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        log(f"{directory} not found; using the bundled samples")
        directory = REPO_ROOT / "samples" / "flowers"
    return sorted(p for p in directory.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def build_data_dir(work: Path, vectors: int, photos: list[Path], input_size: int, index_type: str) -> DataDir:
    """Catalog rows + FAISS index: `photos` embedded for real, the rest synthetic unit vectors."""
    marker = work / "built.json"
    wanted = {"vectors": vectors, "photos": [str(p) for p in photos], "input_size": input_size,
              "index_type": index_type}
    datadir = DataDir(work / "data")
    if marker.exists() and json.loads(marker.read_text()) == wanted:
        log(f"reusing {datadir.root}")
        return datadir
    shutil.rmtree(work, ignore_errors=True)
    collection = work / "photos"
    (collection / "real").mkdir(parents=True)
    for index, photo in enumerate(photos):
        shutil.copyfile(photo, collection / "real" / f"{index:04d}{photo.suffix.lower()}")
    engine = open_catalog_engine(datadir.ensure().catalog_url)
    try:
        catalog = Catalog(engine)
        branch = build_branch(ModelRequest(input_size=input_size))
        catalog.set_active_model(branch.card)
        collection_id = catalog.collection_id(collection.resolve())
        assert collection_id is not None
        real_paths = sorted(f"real/{p.name}" for p in (collection / "real").iterdir())
        rows = [(path, 0, 0, "real") for path in real_paths]
        rows += [(f"synthetic/{i:07d}.jpg", 0, 0, "synthetic") for i in range(vectors - len(real_paths))]
        ids: dict[str, int] = {}
        for start in tqdm(range(0, len(rows), 5000), desc="catalog rows", unit="chunk"):
            ids.update(catalog.add_pending(collection_id, rows[start:start + 5000]))
        catalog.set_status(ids.values(), ImageStatus.INDEXED)
        host = ModelHost(datadir.models_dir)
        real_vectors = np.concatenate([
            host.embed(branch.card, read_picture((collection / path).read_bytes(), input_size).pixels[None])
            for path in tqdm(real_paths, desc="embedding photos", unit="img")])
        rng = np.random.default_rng(0)
        synthetic = rng.normal(size=(vectors - len(real_paths), branch.card.dim)).astype(np.float32)
        synthetic /= np.linalg.norm(synthetic, axis=1, keepdims=True)
        kind = choose_index_kind(vectors) if index_type == "auto" else index_type
        log(f"building a {kind} index of {vectors} vectors ({branch.card.dim}-d)...")
        started = time.perf_counter()
        store = VectorStore.empty(branch.card.dim, kind)
        all_ids = np.array([ids[path] for path, *_ in rows], dtype=np.int64)
        store.add(all_ids, np.concatenate([real_vectors, synthetic]))
        store.save(datadir.vectors_path)
        log(f"index built in {time.perf_counter() - started:.0f} s")
    finally:
        engine.dispose()
    marker.write_text(json.dumps(wanted))
    return datadir


def percentiles(samples: list[float]) -> tuple[float, float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return statistics.median(ordered), p95, statistics.fmean(ordered)


@contextmanager
def timing(samples: list[float]) -> Iterator[None]:
    """Appends the block's wall time, in milliseconds, to `samples`."""
    started = time.perf_counter()
    yield
    samples.append((time.perf_counter() - started) * 1000)


def distinct_uploads(photos: list[Path], count: int, best_quality: int = 95) -> list[bytes]:
    """Re-encoded photos (different quality per copy) so that no two uploads share a digest."""
    uploads = []
    for index in range(count):
        image = Image.open(photos[index % len(photos)]).convert("RGB")
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=best_quality - index // len(photos))
        uploads.append(buffer.getvalue())
    return uploads


def multipart(data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"k\"\r\n\r\n{K}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"q.jpg\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n").encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


class Client:
    """One keep-alive HTTP/1.1 connection, as a browser would hold."""

    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.server_ms: dict[str, float] = {}  # the last response's Server-Timing

    def post(self, body: bytes, content_type: str) -> dict:
        self.connection.request("POST", "/api/search", body=body, headers={"Content-Type": content_type})
        response = self.connection.getresponse()
        payload = response.read()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {payload[:300]!r}")
        self.server_ms = {name: float(duration.removeprefix("dur=")) for name, duration, *_ in
                          (part.split(";") for part in response.getheader("Server-Timing", "").split(", "))}
        return json.loads(payload)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(datadir: DataDir, port: int, torch_threads: int) -> subprocess.Popen[bytes]:
    server = subprocess.Popen([sys.executable, "-c", "from whysim.webui.cli import main; main()", "serve",
                               "--data-dir", str(datadir.root), "--port", str(port)],
                              env={**os.environ, "OMP_NUM_THREADS": str(torch_threads)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            connection.request("GET", "/api/health")
            if connection.getresponse().status == 200:
                return server
        except OSError:
            time.sleep(0.2)
    server.terminate()
    raise RuntimeError("the server did not become healthy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--photos", type=Path, default=DEFAULT_PHOTOS, help="real photos (a few are used)")
    parser.add_argument("--real", type=int, default=64, help="photos embedded into the index")
    parser.add_argument("--id-requests", type=int, default=300)
    parser.add_argument("--uploads", type=int, default=60)
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--index-type", choices=["auto", "flat", "hnsw"], default="auto")
    parser.add_argument("--torch-threads", type=int, default=torch.get_num_threads(),
                        help="intra-op threads, the same in this process and in the server")
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()) / "whysim-bench-search")
    args = parser.parse_args()

    torch.set_num_threads(args.torch_threads)
    files = photo_files(args.photos)
    random.Random(0).shuffle(files)
    indexed_photos, query_photos = files[:args.real], files[args.real:] or files
    datadir = build_data_dir(args.work_dir, args.vectors, indexed_photos, args.input_size, args.index_type)

    store = VectorStore.load(datadir.vectors_path)
    engine = open_catalog_engine(datadir.catalog_url)
    card = Catalog(engine).active_model()
    engine.dispose()
    assert card is not None
    rng = random.Random(1)
    stored_ids = store.ids()
    query_ids = [int(stored_ids[rng.randrange(len(stored_ids))]) for _ in range(args.id_requests)]
    uploads = distinct_uploads(query_photos, args.uploads)
    host = ModelHost(datadir.models_dir)

    port = free_port()
    log(f"starting `whysim serve` on port {port} ...")
    server = start_server(datadir, port, args.torch_threads)
    try:
        client = Client(port)
        for data in distinct_uploads(query_photos, 3, best_quality=60):  # loads the model in both processes
            client.post(*multipart(data))
            host.embed(card, read_picture(data, card.input_size).pixels[None])
        for image_id in query_ids[:20]:
            client.post(json.dumps({"image_id": image_id, "k": K}).encode(), "application/json")
        # Each baseline is measured next to the HTTP request it is compared with, so both see
        # the same machine (other processes come and go on a shared one), and the order
        # alternates, so that neither side always runs right after the other warmed the caches.
        faiss_ms, by_id_ms, id_server_ms = [], [], []
        for turn, image_id in enumerate(tqdm(query_ids, desc="by id", unit="req")):
            vector = store.reconstruct(image_id)
            body = json.dumps({"image_id": image_id, "k": K}).encode()
            for step in (0, 1) if turn % 2 else (1, 0):
                if step == 0:
                    with timing(faiss_ms):
                        store.search(vector, K)
                else:
                    with timing(by_id_ms):
                        client.post(body, "application/json")
                    id_server_ms.append(client.server_ms["query"] + client.server_ms["search"])
        embed_ms, decode_embed_ms, by_upload_ms, server_embed_ms, server_search_ms = [], [], [], [], []
        for turn, data in enumerate(tqdm(uploads, desc="by upload", unit="req")):
            pixels = read_picture(data, card.input_size).pixels[None]
            body, content_type = multipart(data)
            for step in (0, 1, 2) if turn % 2 else (2, 1, 0):
                if step == 0:
                    with timing(embed_ms):
                        host.embed(card, pixels)
                elif step == 1:
                    with timing(decode_embed_ms):
                        host.embed(card, read_picture(data, card.input_size).pixels[None])
                else:
                    with timing(by_upload_ms):
                        answer = client.post(body, content_type)
                    check_upload(answer)
                    server_embed_ms.append(client.server_ms["query"])
                    server_search_ms.append(client.server_ms["search"])
    finally:
        server.terminate()
        server.wait(timeout=60)

    # What the server did (its Server-Timing header) and what the rest of the round trip cost.
    id_http_ms = [total - server for total, server in zip(by_id_ms, id_server_ms, strict=True)]
    upload_http_ms = [total - embed - search for total, embed, search
                      in zip(by_upload_ms, server_embed_ms, server_search_ms, strict=True)]
    rows = [("faiss search (k=10)", faiss_ms), ("embed (forward pass)", embed_ms),
            ("decode + embed", decode_embed_ms),
            ("HTTP search by id", by_id_ms), ("  server: lookup+search", id_server_ms),
            ("  HTTP + JSON", id_http_ms),
            ("HTTP search by upload", by_upload_ms), ("  server: decode+embed", server_embed_ms),
            ("  server: search", server_search_ms), ("  HTTP + JSON", upload_http_ms)]
    print(f"\nsearch latency: {len(store)} vectors in a {store.kind} index, {card.short_name()}, k={K}, "
          f"loopback HTTP (whysim serve), torch threads {args.torch_threads}, {len(uploads)} distinct uploads "
          f"(~{statistics.fmean(len(u) for u in uploads) / 1024:.0f} KB JPEG)")
    print(f"{'':<26}{'p50 ms':>9}{'p95 ms':>9}{'mean ms':>9}{'n':>6}")
    for name, samples in rows:
        p50, p95, mean = percentiles(samples)
        print(f"{name:<26}{p50:>9.2f}{p95:>9.2f}{mean:>9.2f}{len(samples):>6}")
    faiss50, faiss95, _ = percentiles(faiss_ms)
    id50, id95, _ = percentiles(by_id_ms)
    de50, de95, _ = percentiles(decode_embed_ms)
    up50, up95, _ = percentiles(by_upload_ms)
    print(f"\nby id / faiss search:                p50 {id50 / faiss50:6.2f}x   p95 {id95 / faiss95:6.2f}x   "
          f"(overhead p50 {id50 - faiss50:.1f} ms)")
    print(f"by upload / (decode+embed + faiss):  p50 {up50 / (de50 + faiss50):6.2f}x   "
          f"p95 {up95 / (de95 + faiss95):6.2f}x   (overhead p50 {up50 - de50 - faiss50:.1f} ms)")


def check_upload(body: dict) -> None:
    if len(body["hits"]) != K:
        raise RuntimeError(f"expected {K} hits, got {len(body['hits'])}")


if __name__ == "__main__":
    main()
