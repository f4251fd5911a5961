"""Access: read-only unless an admin token is configured, the token itself, the re-index it
guards, security headers on every response, and CORS only for configured origins."""
from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import ALL_STORAGE, encode, make_picture

from search_layer.collection import PICTURE_SIZE, run_index
from whysim.indexer.datadir import DataDir

TOKEN = "correct-horse-battery-staple-42"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


def assert_json_error(response, status: int, fragment: str) -> None:
    assert response.status_code == status, (response.status_code, response.data[:300])
    assert response.is_json and fragment in response.json["error"]


@pytest.mark.parametrize("headers, status", [({}, 401), (BEARER, 403), ({"Authorization": "Bearer "}, 401)])
def test_without_a_configured_token_the_server_is_read_only(client, headers, status) -> None:
    """403 to a client that sends a token; 401 (no credentials) to one that sends none."""
    assert_json_error(client.post("/api/index/refresh", headers=headers), status, "this server is read-only")
    assert_json_error(client.get("/api/index/refresh", headers=headers), status, "this server is read-only")


@pytest.mark.parametrize("authorization", [
    None, "", "Bearer", f"Bearer {TOKEN[:-1]}", f"Bearer {TOKEN}x", f"Basic {TOKEN}", f"bearer {TOKEN.upper()}",
    TOKEN, "Bearer ünïcödé",
])
def test_a_configured_token_must_be_sent_exactly(make_app, built_index, authorization) -> None:
    client = make_app(built_index, WHYSIM_ADMIN_TOKEN=TOKEN).test_client()
    headers = {} if authorization is None else {"Authorization": authorization}
    for response in (client.post("/api/index/refresh", headers=headers),
                     client.get("/api/index/refresh", headers=headers)):
        assert_json_error(response, 401, "missing or wrong admin token")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_short_tokens_are_refused_at_startup(make_app, built_index) -> None:
    with pytest.raises(ValueError, match="at least 16 characters"):
        make_app(built_index, WHYSIM_ADMIN_TOKEN="hunter2")


def test_status_reads_idle_before_any_refresh(make_app, built_index) -> None:
    client = make_app(built_index, WHYSIM_ADMIN_TOKEN=TOKEN).test_client()
    status = client.get("/api/index/refresh", headers={"Authorization": f"bearer {TOKEN}"})
    assert status.status_code == 200 and status.json["state"] == "idle"


@pytest.fixture
def small_index(make_collection, tmp_path: Path, catalog_url: str | None) -> tuple[Path, DataDir]:
    root = make_collection({"blobs": 3, "stripes": 3}, name="refreshable")
    datadir = DataDir(tmp_path / "refresh-data", catalog_url)
    run_index(root, datadir)
    return root, datadir


def wait_for_job(client, timeout_s: float = 120) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        status = client.get("/api/index/refresh", headers=BEARER).json
        if status["state"] != "running" or time.monotonic() > deadline:
            return status
        time.sleep(0.1)


@pytest.mark.parametrize("storage", ALL_STORAGE, indirect=True)
def test_refresh_indexes_new_files_and_prunes_gone_ones(make_app, small_index) -> None:
    root, datadir = small_index
    client = make_app(datadir, WHYSIM_ADMIN_TOKEN=TOKEN).test_client()
    assert client.get("/api/stats").json["vectors"] == 6
    for seed in (501, 502):
        (root / "blobs" / f"new_{seed}.jpg").write_bytes(encode(make_picture(seed, PICTURE_SIZE)))
    started = client.post("/api/index/refresh", headers=BEARER)
    assert started.status_code == 202 and started.json["state"] == "running"
    assert started.headers["Location"].endswith("/api/index/refresh")
    finished = wait_for_job(client)
    assert finished["state"] == "succeeded", finished
    [collection] = finished["collections"]
    assert collection["root"] == str(root) and collection["report"]["indexed"] == 2
    assert client.get("/api/stats").json["vectors"] == 8  # the server serves the new index at once
    new_ids = [image["id"] for image in client.get("/api/images?limit=100").json["images"]
               if image["path"].startswith("blobs/new_")]
    assert len(new_ids) == 2 and client.post("/api/search", json={"image_id": new_ids[0]}).status_code == 200

    (root / "blobs" / "new_501.jpg").unlink()
    assert_json_error(client.post("/api/index/refresh", headers=BEARER, json={"prune": "yes"}), 400,
                      "prune must be true or false")
    assert client.post("/api/index/refresh", headers=BEARER, json={"prune": True}).status_code == 202
    finished = wait_for_job(client)
    assert finished["state"] == "succeeded" and finished["prune"] is True
    assert finished["collections"][0]["report"]["removed"] == 1
    assert client.get("/api/stats").json["vectors"] == 7


def test_refresh_is_409_while_another_writer_holds_the_data_directory(make_app, small_index, tmp_path) -> None:
    _, datadir = small_index
    client = make_app(datadir, WHYSIM_ADMIN_TOKEN=TOKEN).test_client()
    # A shared (PostgreSQL) catalog is locked for writers on every machine: the writer here
    # works in a data directory of its own, as `whysim index` on another host would.
    holder = DataDir(tmp_path / "other-host", datadir.catalog_url_override) if datadir.catalog_url_override else datadir
    with holder.writer_lock():  # what a running `whysim index` holds
        assert_json_error(client.post("/api/index/refresh", headers=BEARER), 409, "another whysim process")
    assert client.post("/api/index/refresh", headers=BEARER).status_code == 202
    assert wait_for_job(client)["state"] == "succeeded"


SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def test_security_headers_on_every_kind_of_response(client, images) -> None:
    image_id = images["blobs/blobs_001.jpg"].id
    for url in ("/api/health", f"/api/images/{image_id}/file", f"/api/images/{image_id}/thumbnail",
                "/api/nothing", "/no-such-page", "/api/openapi.json"):
        response = client.get(url)
        for name, value in SECURITY_HEADERS.items():
            assert response.headers.get(name) == value, (url, name)
        policy = response.headers["Content-Security-Policy"]
        assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy, url
        assert "'unsafe-inline'" not in policy and "*" not in policy
        assert "Access-Control-Allow-Origin" not in response.headers


def test_no_cors_unless_configured(client) -> None:
    origin = {"Origin": "https://attacker.example"}
    response = client.get("/api/stats", headers=origin)
    assert response.status_code == 200 and "Access-Control-Allow-Origin" not in response.headers
    preflight = client.options("/api/search", headers={**origin, "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 405 and "Access-Control-Allow-Origin" not in preflight.headers


def test_cors_answers_only_the_configured_origins(make_app, built_index) -> None:
    client = make_app(built_index, WHYSIM_CORS_ORIGINS="https://ui.example, https://other.example/").test_client()
    allowed = client.get("/api/stats", headers={"Origin": "https://other.example"})
    assert allowed.headers["Access-Control-Allow-Origin"] == "https://other.example"
    assert "Origin" in allowed.headers["Vary"]
    assert allowed.headers["Cross-Origin-Resource-Policy"] == "cross-origin"
    refused = client.get("/api/stats", headers={"Origin": "https://ui.example.attacker.test"})
    assert "Access-Control-Allow-Origin" not in refused.headers
    preflight = client.options("/api/search", headers={"Origin": "https://ui.example",
                                                       "Access-Control-Request-Method": "POST"})
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "https://ui.example"
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    other = client.options("/api/search", headers={"Origin": "https://evil.example",
                                                   "Access-Control-Request-Method": "POST"})
    assert other.status_code == 405 and "Access-Control-Allow-Origin" not in other.headers


def test_a_wildcard_cors_origin_is_refused(make_app, built_index) -> None:
    with pytest.raises(ValueError, match="exact origins"):
        make_app(built_index, WHYSIM_CORS_ORIGINS=["*"])
