"""Runs `whysim serve` in a child process, and a small keep-alive HTTP client for tests that
talk to it from threads. The load itself comes from Locust (locust_run.py, locustfile.py).
"""
from __future__ import annotations

import http.client
import json
import random
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


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
        process = subprocess.Popen([sys.executable, "-c", "from whysim.webui.cli import main; main()", "serve",
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


class LoadClient:
    """One keep-alive connection; every non-200 answer raises."""

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
