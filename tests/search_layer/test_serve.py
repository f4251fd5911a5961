"""`whysim serve` starts a real HTTP server that answers the API: Flask's development server by
default, waitress with --production."""
from __future__ import annotations

import http.client
import json

import numpy as np
from benchmarks.http_load import multipart_image, whysim_server
from conftest import encode
from PIL import Image

from search_layer.collection import catalog_option
from search_layer.conftest import ANY_CATALOG


def post_json(port: int, body: dict) -> tuple[int, dict]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.request("POST", "/api/search", body=json.dumps(body).encode(),
                       headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    return response.status, json.loads(response.read())


def test_serve_answers_health_and_search_over_http(built_index, images) -> None:
    with whysim_server(built_index.root, *catalog_option(built_index), "--max-k", "5") as server:
        status, health = server.get_json("/api/health")
        assert status == 200 and health["status"] == "ok" and health["vectors"] == 11
        query = images["blobs/blobs_001.jpg"].id
        status, answer = post_json(server.port, {"image_id": query})
        assert status == 200 and len(answer["hits"]) == 5  # --max-k 5 caps the default k
        assert query not in [hit["id"] for hit in answer["hits"]]
        status, answer = post_json(server.port, {"image_id": query, "k": 6})
        assert status == 400 and "between 1 and 5" in answer["error"]
        assert "development server, read-only" in server.log()


@ANY_CATALOG
def test_production_server_is_waitress_with_json_errors_and_security_headers(built_index, images) -> None:
    with whysim_server(built_index.root, *catalog_option(built_index), "--production", "--threads", "2", "--max-upload-mb", "0.05") as server:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        connection.request("GET", "/api/health")
        health = connection.getresponse()
        assert health.status == 200 and json.loads(health.read())["vectors"] == 11
        assert health.getheader("Server") == "whysim"
        assert health.getheader("X-Frame-Options") == "DENY" and health.getheader("Content-Security-Policy")

        noise = np.random.default_rng(1).integers(0, 255, (150, 150, 3), dtype=np.uint8)
        too_big = encode(Image.fromarray(noise), "PNG")
        assert 0.05 * 2**20 < len(too_big) < 0.1 * 2**20
        body, content_type = multipart_image(too_big, 3)
        connection.request("POST", "/api/search", body=body, headers={"Content-Type": content_type})
        refused = connection.getresponse()
        assert refused.status == 413 and refused.getheader("Content-Type") == "application/json"
        assert "upload too large" in json.loads(refused.read())["error"]

        status, answer = post_json(server.port, {"image_id": images["stripes/stripes_002.jpg"].id, "k": 3})
        assert status == 200 and len(answer["hits"]) == 3
        status, answer = server.get_json("/api/index/refresh")
        assert status == 401 and "read-only" in answer["error"]  # no credentials sent
        assert "(waitress, 2 threads, read-only; Ctrl-C to stop)" in server.log()


def explain_status(port: int, query: int, hit: int, forwarded_for: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.request("GET", f"/api/explain?query={query}&hit={hit}", headers={"X-Forwarded-For": forwarded_for})
    response = connection.getresponse()
    response.read()
    return response.status


@ANY_CATALOG
def test_production_server_tells_clients_apart_only_behind_trusted_proxies(built_index, images) -> None:
    query, hit = images["blobs/blobs_001.jpg"].id, images["blobs/blobs_002.jpg"].id
    limited = ("--production", "--threads", "2", "--explain-limit", "1/minute")
    with whysim_server(built_index.root, *catalog_option(built_index), *limited, "--trusted-proxies", "1") as server:
        assert [explain_status(server.port, query, hit, client) for client in ("198.51.100.1", "198.51.100.1",
                                                                               "198.51.100.2")] == [200, 429, 200]
    with whysim_server(built_index.root, *catalog_option(built_index), *limited) as server:  # header ignored: one client
        assert [explain_status(server.port, query, hit, client) for client in ("198.51.100.1",
                                                                               "198.51.100.2")] == [200, 429]
