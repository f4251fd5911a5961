"""Image details, listing, thumbnails and original files; files are served only from their collection."""
from __future__ import annotations

import io
from pathlib import Path

import pytest
from conftest import encode, make_picture
from PIL import Image

from whysim.indexer.catalog.database import open_catalog_engine
from whysim.indexer.catalog.repository import Catalog


def test_image_details(client, images) -> None:
    info = images["copies/blobs_000_copy.jpg"]
    body = client.get(f"/api/images/{info.id}").json
    assert body["id"] == info.id and body["path"] == info.path and body["label"] == "copies"
    assert body["status"] == "duplicate" and body["duplicate_of"] == images["blobs/blobs_000.jpg"].id
    assert body["sha256"] == info.sha256 and (body["width"], body["height"]) == (96, 72)
    failed = client.get(f"/api/images/{images['broken/truncated.jpg'].id}").json
    assert failed["status"] == "failed" and "truncated" in failed["error"]


def test_listing_pages_through_the_catalog(client, images) -> None:
    indexed = client.get("/api/images?limit=4").json
    assert len(indexed["images"]) == 4 and indexed["next_offset"] == 4
    everything, offset = [], 0
    while offset is not None:
        page = client.get(f"/api/images?status=all&limit=5&offset={offset}").json
        everything += [image["id"] for image in page["images"]]
        offset = page["next_offset"]
    assert everything == sorted(info.id for info in images.values())
    failed = client.get("/api/images?status=failed").json["images"]
    assert [image["path"] for image in failed] == ["broken/truncated.jpg"]
    assert client.get("/api/images?status=lost").status_code == 400
    assert client.get("/api/images?limit=0").status_code == 400


def test_thumbnail_is_made_once_stored_and_cached(client, app, images, built_index) -> None:
    info = images["rotated/rotated.jpg"]
    links = client.get(f"/api/images/{info.id}").json
    response = client.get(links["thumbnail_url"])
    assert response.status_code == 200 and response.mimetype == "image/jpeg"
    assert Image.open(io.BytesIO(response.data)).size == (72, 96)  # upright, never enlarged
    assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    etag = response.headers["ETag"]
    stored = list(built_index.thumbnails_dir.glob(f"{info.id}-*.jpg"))
    assert len(stored) == 1
    assert client.get(links["thumbnail_url"], headers={"If-None-Match": etag}).status_code == 304
    unversioned = client.get(f"/api/images/{info.id}/thumbnail")
    assert unversioned.headers["Cache-Control"] == "no-cache" and unversioned.headers["ETag"] == etag
    assert list(built_index.thumbnails_dir.glob(f"{info.id}-*.jpg")) == stored


def test_large_images_get_bounded_thumbnails(make_app, index_copy, tmp_path: Path) -> None:
    root = tmp_path / "large"
    root.mkdir()
    (root / "wide.png").write_bytes(encode(make_picture(5, (900, 300)), "PNG"))
    image_id = add_rows(index_copy, root, ["wide.png"])[0]
    client = make_app(index_copy, WHYSIM_THUMBNAIL_SIDE=128).test_client()
    thumbnail = Image.open(io.BytesIO(client.get(f"/api/images/{image_id}/thumbnail").data))
    assert thumbnail.size == (128, 43)


def test_file_is_the_original_bytes(client, images, collection) -> None:
    info = images["stripes/stripes_001.jpg"]
    response = client.get(f"/api/images/{info.id}/file")
    assert response.status_code == 200 and response.mimetype == "image/jpeg"
    assert response.data == (collection / info.path).read_bytes()
    assert response.headers["X-Content-Type-Options"] == "nosniff"


def add_rows(datadir, root: Path, paths: list[str]) -> list[int]:
    engine = open_catalog_engine(datadir.catalog_url)
    try:
        catalog = Catalog(engine)
        collection_id = catalog.collection_id(root)
        added = catalog.add_pending(collection_id, [(path, 1, 1, None) for path in paths])
        return [added[path] for path in paths]
    finally:
        engine.dispose()


def test_rows_pointing_outside_their_collection_are_never_served(make_app, index_copy, tmp_path: Path) -> None:
    root = tmp_path / "collection"
    root.mkdir()
    secret = tmp_path / "secret.jpg"
    secret.write_bytes(encode(make_picture(3)))
    (root / "link.jpg").symlink_to(secret)
    inside_root = root / "inside"
    inside_root.mkdir()
    ids = add_rows(index_copy, root, ["../secret.jpg", "link.jpg", "missing.jpg", "inside"])
    client = make_app(index_copy).test_client()
    for image_id in ids:
        for suffix in ("file", "thumbnail"):
            response = client.get(f"/api/images/{image_id}/{suffix}")
            assert response.status_code == 404 and response.is_json, (image_id, suffix)
            assert "missing or outside its collection" in response.json["error"]


@pytest.mark.parametrize("url", [
    "/api/images/1/../../../etc/passwd",
    "/api/images/%2e%2e/%2e%2e/etc/passwd/file",
    "/api/images/..%2F..%2Fetc%2Fpasswd/file",
    "/api/images/-1/file",
    "/api/images/1.5/file",
    "/api/images/1/file/../../../../etc/passwd",
    "/api/images/987654/file",
    "/api/images/987654/thumbnail",
    "/api/images/1/file%00.jpg",
    "/api/queries/../../../etc/passwd/image",
    "/api/../../etc/passwd",
])
def test_traversal_attempts_are_json_404(client, url) -> None:
    response = client.get(url)
    assert response.status_code == 404 and response.is_json and "error" in response.json
    assert b"root:" not in response.data
