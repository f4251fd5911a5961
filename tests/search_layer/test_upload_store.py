"""Uploaded queries kept on disk (search/serving/upload_store.py): a link to an upload search still
works after the server restarts, and the folder keeps only the most recently used uploads."""
from __future__ import annotations

import io
import os

from conftest import encode, make_picture

from search_layer.collection import PICTURE_SIZE
from search_layer.conftest import ANY_CATALOG
from whysim.search.serving.pictures import bytes_digest
from whysim.search.serving.upload_store import UploadFiles


@ANY_CATALOG
def test_an_upload_search_survives_a_restart(make_app, index_copy) -> None:
    photo = encode(make_picture(401, PICTURE_SIZE))
    first = make_app(index_copy).test_client()
    found = first.post("/api/search", data={"image": (io.BytesIO(photo), "q.jpg"), "k": "5"})
    assert found.status_code == 200
    digest = found.json["query"]["digest"]
    assert (index_copy.uploads_dir / digest).read_bytes() == photo

    restarted = make_app(index_copy).test_client()  # a new app: nothing held in memory
    again = restarted.post("/api/search", json={"query": digest, "k": 5})
    assert again.status_code == 200, again.json
    assert [hit["id"] for hit in again.json["hits"]] == [hit["id"] for hit in found.json["hits"]]
    assert restarted.get(f"/api/queries/{digest}/image").status_code == 200
    explained = restarted.get(again.json["hits"][0]["explain_url"])
    assert explained.status_code == 200


@ANY_CATALOG
def test_a_digest_never_uploaded_is_still_a_404(make_app, index_copy) -> None:
    missing = make_app(index_copy).test_client().post("/api/search", json={"query": "ab" * 32})
    assert missing.status_code == 404 and "upload the query again" in missing.json["error"]


def test_the_folder_keeps_the_most_recently_used_uploads(tmp_path) -> None:
    files = UploadFiles(tmp_path / "uploads", capacity=2)
    blobs = [bytes([index]) * 10 for index in range(3)]
    digests = [bytes_digest(blob) for blob in blobs]
    files.save(digests[0], blobs[0])
    files.save(digests[1], blobs[1])
    os.utime(files.folder / digests[0], ns=(1, 1))  # 0 the older
    os.utime(files.folder / digests[1], ns=(2, 2))
    assert files.load(digests[0]) == blobs[0]  # a use makes 0 the most recent
    files.save(digests[2], blobs[2])
    assert sorted(files.digests()) == sorted([digests[0], digests[2]])
    assert files.load(digests[1]) is None
    assert not list(files.folder.glob(".*.tmp"))
