"""`whysim serve` starts a real HTTP server that answers the API."""
from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_serve_answers_health_and_search_over_http(built_index, images) -> None:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", "from webui.cli import main; main()", "serve",
                               "--data-dir", str(built_index.root), "--port", str(port), "--max-k", "5"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/health", timeout=5) as response:
                    health = json.load(response)
                break
            except (urllib.error.URLError, ConnectionError):
                assert server.poll() is None, server.stdout.read() if server.stdout else ""
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.2)
        assert health["status"] == "ok" and health["vectors"] == 11
        query = images["blobs/blobs_001.jpg"].id
        request = urllib.request.Request(f"{base}/api/search", data=json.dumps({"image_id": query}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            hits = json.load(response)["hits"]
        assert len(hits) == 5 and query not in [hit["id"] for hit in hits]  # --max-k 5 caps the default k
        request = urllib.request.Request(f"{base}/api/search", data=json.dumps({"image_id": query, "k": 6}).encode(),
                                         headers={"Content-Type": "application/json"})
        try:
            urllib.request.urlopen(request, timeout=30)
            raise AssertionError("k above --max-k was accepted")
        except urllib.error.HTTPError as error:
            assert error.code == 400 and "between 1 and 5" in json.load(error)["error"]
    finally:
        server.terminate()
        server.wait(timeout=30)
