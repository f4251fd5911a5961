"""POST/GET /api/search through Flask's test client on the real index."""
from __future__ import annotations

import hashlib
import io

import pytest
from conftest import encode, make_picture
from PIL import Image


def upload(client, data: bytes, **fields: object):
    return client.post("/api/search", data={"image": (io.BytesIO(data), "query.jpg"),
                                            **{k: str(v) for k, v in fields.items()}})


def hit_ids(response) -> list[int]:
    return [hit["id"] for hit in response.json["hits"]]


def test_upload_search_answers_the_contract(client, collection, images) -> None:
    target = images["blobs/blobs_003.jpg"]
    data = (collection / target.path).read_bytes()
    response = upload(client, data, k=4)
    assert response.status_code == 200 and response.is_json
    body = response.json
    digest = hashlib.sha256(data).hexdigest()
    assert body["query"] == {"kind": "upload", "key": digest, "digest": digest, "width": 96, "height": 72,
                             "image_url": f"/api/queries/{digest}/image"}
    assert body["k"] == 4 and body["offset"] == 0 and body["next_offset"] == 4
    timings = dict(part.split(";")[:2] for part in response.headers["Server-Timing"].split(", "))
    assert set(timings) == {"query", "search"} and all(float(v.removeprefix("dur=")) >= 0 for v in timings.values())
    hits = body["hits"]
    assert len(hits) == 4 and target.id not in hit_ids(response)
    assert [hit["rank"] for hit in hits] == [1, 2, 3, 4]
    assert [hit["score"] for hit in hits] == sorted((hit["score"] for hit in hits), reverse=True)
    for hit in hits:
        assert {"id", "path", "label", "score", "thumbnail_url", "image_url", "explain_url"} <= set(hit)
        assert hit["explain_url"] == f"/api/explain?query={digest}&hit={hit['id']}"
        assert images[hit["path"]].id == hit["id"] and images[hit["path"]].label == hit["label"]
    file = client.get(hits[0]["image_url"])
    assert file.status_code == 200 and file.data == (collection / hits[0]["path"]).read_bytes()
    query_image = client.get(body["query"]["image_url"])
    assert query_image.mimetype == "image/jpeg" and Image.open(io.BytesIO(query_image.data)).size == (96, 72)


def test_id_search_is_the_same_by_json_and_by_form(client, images) -> None:
    query = images["stripes/stripes_003.jpg"]
    by_json = client.post("/api/search", json={"image_id": query.id, "k": 5})
    by_form = client.post("/api/search", data={"image_id": str(query.id), "k": "5"})
    assert by_json.status_code == by_form.status_code == 200
    assert hit_ids(by_json) == hit_ids(by_form)
    assert query.id not in hit_ids(by_json) and len(hit_ids(by_json)) == 5
    described = by_json.json["query"]
    assert described["kind"] == "image" and described["key"] == str(query.id) and described["id"] == query.id
    assert described["path"] == query.path and described["label"] == "stripes"


def test_paging_by_offset_and_by_digest_without_reuploading(client, images) -> None:
    data = encode(make_picture(777, (96, 72)))
    first = upload(client, data, k=3)
    digest = first.json["query"]["key"]
    second = client.post("/api/search", json={"query": digest, "k": 3, "offset": first.json["next_offset"]})
    whole = client.post("/api/search", data={"query": digest, "k": "20"})
    assert second.status_code == whole.status_code == 200
    assert hit_ids(first) + hit_ids(second) == hit_ids(whole)[:6]
    assert whole.json["next_offset"] is None and len(hit_ids(whole)) == 11
    assert [hit["rank"] for hit in second.json["hits"]] == [4, 5, 6]


def test_min_score_filters_hits(client, images) -> None:
    query = images["blobs/blobs_004.jpg"].id
    everything = client.post("/api/search", json={"image_id": query, "k": 20}).json["hits"]
    cut = (everything[2]["score"] + everything[3]["score"]) / 2  # scores are rounded: cut between two
    limited = client.post("/api/search", json={"image_id": query, "k": 20, "min_score": cut})
    assert limited.json["hits"] == everything[:3] and limited.json["next_offset"] is None
    assert limited.json["min_score"] == pytest.approx(cut)
    by_form = client.post("/api/search", data={"image_id": str(query), "min_score": str(cut), "k": "20"})
    assert by_form.json["hits"] == everything[:3]
    not_a_number = client.post("/api/search", data={"image_id": str(query), "min_score": "nan"})
    assert not_a_number.status_code == 400 and "cosine similarity" in not_a_number.json["error"]


@pytest.mark.parametrize("fields, message", [
    ({"k": 0}, "k must be between 1 and 100"),
    ({"k": 101}, "k must be between 1 and 100"),
    ({"k": "ten"}, "k must be an integer"),
    ({"k": 2.5}, "k must be an integer"),
    ({"k": True}, "k must be an integer"),
    ({"k": "5"}, "k must be an integer"),
    ({"min_score": None}, "min_score must be a number"),
    ({"image_id": "1"}, "image_id must be an integer"),
    ({"offset": -1}, "offset must be between 0 and 10000"),
    ({"offset": 10001}, "offset must be between 0 and 10000"),
    ({"min_score": 2}, "min_score must be a cosine similarity"),
    ({"min_score": "0.5"}, "min_score must be a number"),
    ({"image_id": [1]}, "image_id must be an integer"),
    ({"image_id": 0}, "image_id must be between 1"),
    ({"query": "12"}, "query must be the SHA-256 digest"),
    ({"query": "zz"}, "query must be an indexed image id or the SHA-256 digest"),
])
def test_bad_parameters_are_400_with_a_message(client, images, fields, message) -> None:
    body = {"image_id": images["blobs/blobs_001.jpg"].id, **fields}
    if "query" in fields:
        body.pop("image_id")
    response = client.post("/api/search", json=body)
    assert response.status_code == 400 and message in response.json["error"]


def test_configured_limits_apply(make_app, built_index, images) -> None:
    client = make_app(built_index, WHYSIM_MAX_K=3, WHYSIM_MAX_OFFSET=5).test_client()
    query = images["blobs/blobs_001.jpg"].id
    assert client.post("/api/search", json={"image_id": query}).json["k"] == 3
    assert "between 1 and 3" in client.post("/api/search", json={"image_id": query, "k": 4}).json["error"]
    assert "between 0 and 5" in client.post("/api/search", json={"image_id": query, "offset": 6}).json["error"]
    spec = client.get("/api/openapi.json").json
    body = spec["paths"]["/api/search"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["properties"]["k"]["maximum"] == 3


def test_paging_options_may_come_in_the_query_string(client, images) -> None:
    query = images["blobs/blobs_004.jpg"]
    data = encode(make_picture(778, (96, 72)))
    in_body = upload(client, data, k=3, offset=2)
    in_url = client.post("/api/search?k=3&offset=2", data={"image": (io.BytesIO(data), "query.jpg")})
    assert in_url.status_code == 200 and hit_ids(in_url) == hit_ids(in_body) and len(hit_ids(in_url)) == 3
    body_wins = client.post("/api/search?k=7", json={"image_id": query.id, "k": 2})
    assert len(hit_ids(body_wins)) == 2
    everything = client.post("/api/search", json={"image_id": query.id, "k": 20}).json["hits"]
    cut = (everything[1]["score"] + everything[2]["score"]) / 2
    limited = client.post(f"/api/search?min_score={cut}&k=20", json={"image_id": query.id})
    assert limited.json["hits"] == everything[:2]
    bad = client.post("/api/search?k=0", json={"image_id": query.id})
    assert bad.status_code == 400 and "k must be between 1" in bad.json["error"]


def test_query_string_options_are_checked_even_when_the_body_has_them(client, images) -> None:
    query = images["blobs/blobs_004.jpg"].id
    bad = client.post("/api/search?k=null", json={"image_id": query, "k": 2})
    assert bad.status_code == 400 and "k must be an integer" in bad.json["error"]
    bad = client.post("/api/search?min_score=x", data={"image_id": str(query), "min_score": "0.1"})
    assert bad.status_code == 400 and "min_score must be a number" in bad.json["error"]
