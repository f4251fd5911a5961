"""Every error under /api/ is JSON `{"error": ...}` with the right status: bad images, limits,
unknown ids and routes, wrong methods and content types, no index, crashes."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
from conftest import encode, make_picture
from PIL import Image
from sqlalchemy import create_engine, pool, text

from whysim.indexer.datadir import DataDir


def upload(client, data: bytes, name: str = "q.jpg"):
    return client.post("/api/search", data={"image": (io.BytesIO(data), name)})


def assert_json_error(response, status: int, fragment: str) -> None:
    assert response.status_code == status, (response.status_code, response.data[:300])
    assert response.mimetype == "application/json"
    assert fragment in json.loads(response.data)["error"]


def test_bad_images_are_400(client) -> None:
    whole = encode(make_picture(11, (96, 72)))
    assert_json_error(upload(client, b"just some text"), 400, "not a recognised image format")
    assert_json_error(upload(client, whole[: len(whole) // 3]), 400, "truncated")
    assert_json_error(upload(client, b""), 400, "empty file")
    assert_json_error(upload(client, encode(make_picture(11), "PNG")[:60], "q.png"), 400, "cannot decode")


def test_uploads_over_the_byte_limit_are_413(make_app, built_index) -> None:
    client = make_app(built_index, MAX_CONTENT_LENGTH=10_000).test_client()
    noise = np.random.default_rng(0).integers(0, 255, (120, 120, 3), dtype=np.uint8)
    data = encode(Image.fromarray(noise), "PNG")
    assert len(data) > 10_000
    assert_json_error(upload(client, data, "q.png"), 413, "upload too large: the limit is 0.0 MiB (10000 bytes)")
    assert upload(client, encode(make_picture(1, (32, 32)))).status_code == 200


def test_images_over_the_pixel_limit_are_413(make_app, built_index) -> None:
    client = make_app(built_index, WHYSIM_UPLOAD_MAX_PIXELS=5000).test_client()
    assert_json_error(upload(client, encode(make_picture(1, (96, 72)))), 413, "too many pixels: 96x72")
    assert upload(client, encode(make_picture(1, (64, 64)))).status_code == 200


def test_unknown_ids_and_routes_are_404(client) -> None:
    assert_json_error(client.post("/api/search", json={"image_id": 987654}), 404, "no image with id 987654")
    assert_json_error(client.get("/api/images/987654"), 404, "no image with id 987654")
    assert_json_error(client.get(f"/api/images/{2**80}"), 404, "no image with id")
    assert_json_error(client.get("/api/nothing/here"), 404, "no such endpoint: /api/nothing/here")
    assert_json_error(client.get("/api"), 404, "no such endpoint")
    assert_json_error(client.get("/api/stats/"), 404, "no such endpoint")
    assert_json_error(client.get("/api/queries/123/image"), 404, "not an uploaded query")


@pytest.mark.parametrize("method, url, allowed", [
    ("delete", "/api/search", "POST"),
    ("get", "/api/search", "POST"),
    ("post", "/api/stats", "GET"),
    ("patch", "/api/images/1", "GET"),
    ("post", "/api/explain", "GET"),
    ("options", "/api/health", "GET"),
])
def test_wrong_methods_are_405_with_allow(client, method, url, allowed) -> None:
    response = getattr(client, method)(url)
    assert_json_error(response, 405, f"use {allowed}")
    assert allowed.split(", ")[0] in response.headers["Allow"]


def test_unusable_request_bodies(client, images) -> None:
    image_id = images["blobs/blobs_001.jpg"].id
    assert_json_error(client.post("/api/search", data=b"image_id=1", content_type="text/plain"), 415,
                      "send multipart/form-data")
    assert_json_error(client.post("/api/search", data=b"{not json", content_type="application/json"), 400,
                      "the JSON body must be an object")
    assert_json_error(client.post("/api/search", json=[image_id]), 400, "the JSON body must be an object")
    assert_json_error(client.post("/api/search"), 400, "nothing to search for")
    assert_json_error(client.post("/api/search", json={"k": 3}), 400, "nothing to search for")
    both = {"image": (io.BytesIO(encode(make_picture(1))), "q.jpg"), "image_id": str(image_id)}
    assert_json_error(client.post("/api/search", data=both), 400, "give only one of image, image_id")
    assert_json_error(client.post("/api/search", data={"image": "not a file"}), 400, "must be sent as a file")


def test_no_index_is_503(make_app, tmp_path) -> None:
    client = make_app(DataDir(tmp_path / "empty")).test_client()
    assert_json_error(client.post("/api/search", data={"image": (io.BytesIO(encode(make_picture(1))), "q.jpg")}),
                      503, "no index yet")
    health = client.get("/api/health")
    assert health.status_code == 503 and health.json["status"] == "unavailable"
    stats = client.get("/api/stats")
    assert stats.status_code == 200 and stats.json["ready"] is False and stats.json["vectors"] == 0


def test_a_crash_is_a_json_500(make_app, index_copy) -> None:
    client = make_app(index_copy).test_client()
    assert client.get("/api/images/1").status_code == 200
    broken = create_engine(index_copy.catalog_url, poolclass=pool.NullPool)
    with broken.begin() as connection:
        connection.execute(text("DROP TABLE images"))  # the catalog is broken underneath the server
    broken.dispose()
    assert_json_error(client.get("/api/images/1"), 500, "internal server error")


def test_every_api_response_that_is_not_an_image_is_json(client, images) -> None:
    image_id = images["blobs/blobs_001.jpg"].id
    requests = [
        ("get", "/api/health", {}), ("get", "/api/stats", {}), ("get", "/api/openapi.json", {}),
        ("get", f"/api/search?image_id={image_id}", {}), ("post", "/api/search", {"json": {"k": 3}}),
        ("post", "/api/search", {"json": {"image_id": image_id}}), ("get", f"/api/images/{image_id}", {}),
        ("get", "/api/images", {}), ("get", f"/api/explain?query={image_id}&hit={image_id + 1}", {}),
        ("get", "/api/explain", {}), ("get", "/api/explain/overlay", {}), ("get", "/api/nope", {}),
        ("delete", "/api/images/1", {}), ("options", "/api/search", {}), ("head", "/api/unknown", {}),
        ("post", "/api/search", {"data": b"x" * 100, "content_type": "application/octet-stream"}),
    ]
    for method, url, options in requests:
        response = getattr(client, method)(url, **options)
        assert response.mimetype == "application/json", (method, url, response.status_code)
        if method != "head":
            body = json.loads(response.data)
            assert response.status_code < 400 or set(body) == {"error"}, (method, url, body)
