"""Hostile input over HTTP: decompression bombs, absurd numbers, URLs instead of files, client
file names and traversal attempts. Each gets a JSON error with the right status, never a 500."""
from __future__ import annotations

import io
import struct
import tempfile
import threading
import uuid
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from conftest import encode
from PIL import Image


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def grey_png_bomb(side: int) -> bytes:
    """A valid side x side greyscale PNG of zeros: ~100 KB on the wire, side² bytes once decoded."""
    compressor = zlib.compressobj(9)
    row = b"\x00" * (side + 1)  # filter byte + pixels
    data = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", data) + png_chunk(b"IEND", b"")


def upload(client, data: bytes, name: str = "q.png", **fields: str):
    return client.post("/api/search", data={"image": (io.BytesIO(data), name), **fields})


def test_decompression_bomb_is_413_before_decoding(client) -> None:
    bomb = grey_png_bomb(10_000)  # 100 MP: over the 64 MP upload limit, under PIL's own refusal
    assert len(bomb) < 200_000
    response = upload(client, bomb)
    assert response.status_code == 413 and response.is_json
    assert "too many pixels: 10000x10000" in response.json["error"]


@pytest.mark.parametrize("fields, message", [
    ({"k": 10**100}, "k must be between 1 and 100"),
    ({"k": -(10**30)}, "k must be between 1 and 100"),
    ({"k": 1e9}, "k must be between 1 and 100"),  # an integer for JSON Schema: 1000000000.0
    ({"k": "1e9"}, "k must be an integer"),
    ({"offset": 10**40}, "offset must be between 0 and 10000"),
    ({"offset": float("inf")}, "offset must be an integer"),
    ({"k": {"$gt": 1}}, "k must be an integer"),
    ({"min_score": float("-inf")}, "min_score must be a cosine similarity"),
])
def test_absurd_numbers_in_json_are_400(client, images, fields, message) -> None:
    response = client.post("/api/search", json={"image_id": images["blobs/blobs_001.jpg"].id, **fields})
    assert response.status_code == 400 and message in response.json["error"], response.json


@pytest.mark.parametrize("fields, message", [
    ({"k": "9" * 400}, "k must be between 1 and 100"),
    ({"k": "٣"}, "k must be an integer"),  # a digit, but not an ASCII one
    ({"k": "0x10"}, "k must be an integer"),
    ({"offset": "-0"}, None),  # zero is a valid offset
    ({"offset": " 5 "}, None),
    ({"offset": "1" * 50}, "offset must be between 0 and 10000"),
    ({"image_id": "9" * 400}, "image_id must be between 1"),
    ({"min_score": "nan"}, "min_score must be a cosine similarity"),
])
def test_absurd_numbers_in_forms_are_400(client, images, fields, message) -> None:
    form = {"image_id": str(images["blobs/blobs_001.jpg"].id), **fields}
    response = client.post("/api/search", data=form)
    if message is None:
        assert response.status_code == 200
    else:
        assert response.status_code == 400 and message in response.json["error"], response.json


@pytest.mark.parametrize("url", ["/api/images?offset=99999999999999999999", "/api/images?limit=-1",
                                 "/api/explain?query=1&hit=99999999999999999999999"])
def test_absurd_numbers_in_query_strings_are_400(client, url) -> None:
    response = client.get(url)
    assert response.status_code == 400 and response.is_json


def test_json_nested_too_deep_for_the_parser_is_400(make_app, built_index) -> None:
    token = "a-long-enough-admin-token"
    client = make_app(built_index, WHYSIM_ADMIN_TOKEN=token).test_client()
    for deep in ("[" * 100_000 + "]" * 100_000, '{"k":' * 100_000 + "1" + "}" * 100_000):
        for url in ("/api/search", "/api/index/refresh"):
            response = client.post(url, data=deep, content_type="application/json",
                                   headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == 400 and "must be an object" in response.json["error"], url


class CountingHandler(BaseHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        CountingHandler.requests.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.end_headers()
        self.wfile.write(encode(Image.new("RGB", (8, 8)), "PNG"))

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def bait_url() -> Iterator[str]:
    """A loopback server holding a real image: any request reaching it was made by the server under test."""
    CountingHandler.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), CountingHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/photo.png"
    server.shutdown()
    server.server_close()


def test_urls_are_never_fetched_as_image_sources(client, bait_url) -> None:
    attempts = [
        client.post("/api/search", json={"image": bait_url}),
        client.post("/api/search", data={"image": bait_url}),
        client.post("/api/search", json={"image_id": bait_url}),
        client.post("/api/search", data={"image_id": bait_url}),
        client.post("/api/search", json={"query": bait_url}),
        client.post("/api/search", json={"image": {"url": bait_url}}),
        client.get(f"/api/explain?query={bait_url}&hit=1"),
        client.get(f"/api/explain?query=1&hit={bait_url}"),
        client.get(f"/api/queries/{bait_url}/image"),
    ]
    for response in attempts:
        assert 400 <= response.status_code < 500 and response.is_json, (response.status_code, response.data)
    assert all(response.status_code == 400 for response in attempts[:8])
    assert "never fetches URLs" in attempts[0].json["error"]
    assert "never fetches URLs" in attempts[1].json["error"]
    assert CountingHandler.requests == []


def test_uploads_are_never_written_under_the_clients_file_name(make_app, index_copy, monkeypatch,
                                                               tmp_path: Path) -> None:
    temp_dir = tmp_path / "tmp"
    temp_dir.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp_dir))  # where spooled uploads would land
    client = make_app(index_copy).test_client()
    marker = uuid.uuid4().hex
    noise = np.random.default_rng(0).integers(0, 255, (600, 600, 3), dtype=np.uint8)
    data = encode(Image.fromarray(noise), "PNG")
    assert len(data) > 600_000  # larger than what werkzeug keeps in memory: it spools to a file
    before = {p for p in index_copy.root.rglob("*")}
    for name in (f"{marker}.png", f"../../{marker}.png", f"/tmp/{marker}.png"):
        response = upload(client, data, name)
        assert response.status_code == 200, response.json
        assert marker not in response.get_data(as_text=True)
    written = {p for p in index_copy.root.rglob("*")} - before
    assert not [p for p in written if marker in p.name or p.suffix == ".png"], written
    assert list(temp_dir.iterdir()) == []
    assert not list(Path(tempfile.gettempdir()).rglob(f"*{marker}*"))


def test_traversal_in_query_and_static_routes_is_refused(client) -> None:
    for url in ("/api/queries/%2e%2e/image", "/api/queries/..%2F..%2F..%2Fetc%2Fpasswd/image",
                "/static/../../../../etc/passwd", "/static/..%2F..%2F..%2Fetc%2Fpasswd"):
        response = client.get(url)
        assert response.status_code in (400, 404) and b"root:" not in response.data, url
        assert response.is_json or not url.startswith("/api/"), url
