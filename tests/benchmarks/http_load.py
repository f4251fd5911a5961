"""Runs `whysim serve` in a child process and drives it with concurrent keep-alive HTTP clients.

Shared by tests/benchmarks/bench_load.py (the figures) and the test suite (a short run that
asserts correctness under concurrency, never a timing).
"""
from __future__ import annotations

import http.client
import json
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

KINDS = ("search_id", "search_upload", "explain")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class ServerProcess:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def get_json(self, path: str, timeout: float = 60) -> tuple[int, dict]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, json.loads(response.read())
        finally:
            connection.close()


@contextmanager
def whysim_server(data_dir: Path, *options: str, startup_s: float = 180) -> Iterator[ServerProcess]:
    """`whysim serve --data-dir DATA_DIR OPTIONS...` on a free loopback port, until the block ends.

    The server's output goes to a file (a pipe nobody reads would fill up and stall it)."""
    port = free_port()
    with tempfile.NamedTemporaryFile("wb", prefix="whysim-serve-", suffix=".log", delete=False) as log:
        process = subprocess.Popen([sys.executable, "-c", "from webui.cli import main; main()", "serve",
                                    "--data-dir", str(data_dir), "--port", str(port), *options],
                                   stdout=log, stderr=subprocess.STDOUT)
    server = ServerProcess(process, port, Path(log.name))
    try:
        deadline = time.monotonic() + startup_s
        while True:
            try:
                server.get_json("/api/health", timeout=5)
                break
            except (OSError, http.client.HTTPException):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"`whysim serve` did not start:\n{server.log()}") from None
                time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        server.log_path.unlink(missing_ok=True)


def multipart_image(data: bytes, k: int, filename: str = "query.jpg") -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"k\"\r\n\r\n{k}\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{filename}\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n").encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


@dataclass(frozen=True)
class Workload:
    image_ids: Sequence[int]  # indexed images: searched by id and explained in pairs
    uploads: Sequence[bytes]  # distinct query files (more than the server's upload cache holds)
    k: int = 10
    weights: tuple[float, float, float] = (1.0, 1.0, 1.0)  # search_id, search_upload, explain


@dataclass
class KindStats:
    latencies_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def percentile(self, q: int) -> float:
        if len(self.latencies_ms) < 2:
            return self.latencies_ms[0] if self.latencies_ms else float("nan")
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[q - 1]


@dataclass
class LoadResult:
    clients: int
    seconds: float
    by_kind: dict[str, KindStats]

    @property
    def requests(self) -> int:
        return sum(len(stats.latencies_ms) + len(stats.errors) for stats in self.by_kind.values())

    @property
    def errors(self) -> list[str]:
        return [error for stats in self.by_kind.values() for error in stats.errors]

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def table(self) -> str:
        lines = [f"{self.clients} clients, {self.seconds:.1f} s: {self.requests} requests, "
                 f"{self.throughput:.2f} req/s, {len(self.errors)} errors",
                 f"{'kind':<15}{'n':>7}{'errors':>8}{'req/s':>8}{'p50 ms':>10}{'p95 ms':>10}"]
        for kind, stats in self.by_kind.items():
            done = len(stats.latencies_ms)
            lines.append(f"{kind:<15}{done:>7}{len(stats.errors):>8}{done / self.seconds:>8.2f}"
                         f"{stats.percentile(50):>10.1f}{stats.percentile(95):>10.1f}")
        return "\n".join(lines)


class LoadClient:
    """One keep-alive connection issuing the workload's requests; every non-200 is an error."""

    def __init__(self, port: int, workload: Workload, rng: random.Random) -> None:
        self.port = port
        self.workload = workload
        self.rng = rng
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)

    def request(self, method: str, path: str, body: bytes | None = None, content_type: str | None = None) -> dict:
        headers = {"Content-Type": content_type} if content_type else {}
        try:
            self.connection.request(method, path, body=body, headers=headers)
            response = self.connection.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException):
            self.connection.close()  # reconnect on the next request
            raise
        if response.status != 200:
            raise RuntimeError(f"{method} {path.split('?')[0]}: HTTP {response.status} {payload[:200]!r}")
        return json.loads(payload)

    def search_id(self) -> None:
        image_id = self.rng.choice(self.workload.image_ids)
        body = json.dumps({"image_id": image_id, "k": self.workload.k}).encode()
        answer = self.request("POST", "/api/search", body, "application/json")
        if image_id in [hit["id"] for hit in answer["hits"]]:
            raise RuntimeError(f"search by id {image_id} returned the query itself")

    def search_upload(self) -> None:
        body, content_type = multipart_image(self.rng.choice(self.workload.uploads), self.workload.k)
        answer = self.request("POST", "/api/search", body, content_type)
        if answer["query"]["kind"] != "upload" or not answer["hits"]:
            raise RuntimeError(f"unexpected upload answer {str(answer)[:200]}")

    def explain(self) -> None:
        query, hit = self.rng.sample(list(self.workload.image_ids), 2)
        answer = self.request("GET", f"/api/explain?query={query}&hit={hit}")
        if answer["verdict"] not in ("similar", "dissimilar") or answer["hit"]["id"] != hit:
            raise RuntimeError(f"unexpected explanation {str(answer)[:200]}")


def run_load(port: int, workload: Workload, clients: int, seconds: float, seed: int = 0) -> LoadResult:
    """`clients` threads, each on its own connection, issue a random mix until `seconds` have passed."""
    by_kind = {kind: KindStats() for kind in KINDS}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client_loop(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        client = LoadClient(port, workload, rng)
        while time.monotonic() < deadline:
            kind = rng.choices(KINDS, workload.weights)[0]
            started = time.perf_counter()
            try:
                getattr(client, kind)()
            except Exception as exc:  # noqa: BLE001 - every failure is counted and reported
                with lock:
                    by_kind[kind].errors.append(f"{type(exc).__name__}: {exc}")
                continue
            with lock:
                by_kind[kind].latencies_ms.append((time.perf_counter() - started) * 1000)
        client.connection.close()

    started = time.monotonic()
    threads = [threading.Thread(target=client_loop, args=(index,), daemon=True) for index in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return LoadResult(clients, time.monotonic() - started, by_kind)
