"""One client cannot take `whysim serve --production` down: while one address holds 200 slow
connections, another address still gets its health check and search by id answered; the slow
ones are refused over the per-address cap or closed at the header deadline. Errors that waitress
answers itself are JSON with the security headers. (tests/benchmarks/bench_slow_clients.py runs
the same for minutes and prints latencies.)"""
from __future__ import annotations

import json
import socket
import time

import pytest
from benchmarks.http_load import whysim_server
from benchmarks.slow_clients import SlowClients, raw_request

from search_layer.collection import catalog_option
from search_layer.conftest import ANY_CATALOG
from whysim.webui.connection_guard import ConnectionPolicy

OTHER_CLIENT = "127.0.0.2"  # any 127/8 address reaches the loopback server: a second client address
pytestmark = pytest.mark.serial  # answers within 1 s under attack: a timing
HOLD_S = 12.0  # longer than the header deadline, so the trickling connections must have been cut


@ANY_CATALOG
def test_one_address_holding_200_slow_connections_does_not_lock_out_another(built_index, images) -> None:
    query = images["blobs/blobs_001.jpg"].id
    search = json.dumps({"image_id": query, "k": 3}).encode()
    with whysim_server(built_index.root, *catalog_option(built_index), "--production") as server:
        with SlowClients(server.port, 200, "127.0.0.1") as slow:
            answers = []
            deadline = time.monotonic() + HOLD_S
            while time.monotonic() < deadline:
                slow.trickle()
                answers.append(raw_request(server.port, "GET", "/api/health", source=OTHER_CLIENT)[0])
                answers.append(raw_request(server.port, "POST", "/api/search", search, source=OTHER_CLIENT)[0])
                time.sleep(0.5)
            still_open = slow.open_count()
        assert answers and set(answers) == {200}
        assert slow.refused >= 200 - ConnectionPolicy.per_client  # over the cap: answered 503 or closed at once
        assert still_open == 0  # the others were cut at the header deadline
        # The per-address cap answers in JSON, with Retry-After.
        held = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(ConnectionPolicy.per_client)]
        try:
            for connection in held:
                connection.sendall(b"GET /api/health HTTP/1.1\r\n")  # busy, not idle: they keep their places
            time.sleep(0.5)
            status, headers, body = raw_request(server.port, "GET", "/api/health")
            assert status == 503 and headers["retry-after"] and "too many connections" in json.loads(body)["error"]
        finally:
            for connection in held:
                connection.close()


@ANY_CATALOG
def test_errors_waitress_answers_itself_are_json_with_security_headers(built_index) -> None:
    with whysim_server(built_index.root, *catalog_option(built_index), "--production", "--max-upload-mb", "0.01") as server:
        # Over waitress's own body limit (twice the upload limit + 1 MiB): refused from the headers.
        status, headers, body = raw_request(server.port, "POST", "/api/search", declared_length=3 * 2**20)
        assert status == 413
        assert headers["content-type"] == "application/json" and headers["x-frame-options"] == "DENY"
        assert headers["content-security-policy"] and "request entity too large" in json.loads(body)["error"]
        status, headers, body = raw_request(server.port, "GET", "/api/health", extra=b"X-Big: " + b"y" * 300_000 + b"\r\n")
        assert status == 431 and headers["x-content-type-options"] == "nosniff" and json.loads(body)["error"]
        status, headers, body = raw_request(server.port, "POST", "/api/search", chunked_garbage=True)
        assert status == 400 and "chunk" in json.loads(body)["error"] and headers["referrer-policy"] == "no-referrer"
