"""GET /api/explain and its overlays, for uploaded and indexed queries."""
from __future__ import annotations

import io

import numpy as np
import pytest
from conftest import encode, make_picture
from PIL import Image


def upload(client, data: bytes, k: int = 3):
    response = client.post("/api/search", data={"image": (io.BytesIO(data), "q.jpg"), "k": str(k)})
    assert response.status_code == 200, response.json
    return response.json


def png(client, url: str) -> Image.Image:
    response = client.get(url)
    assert response.status_code == 200 and response.mimetype == "image/png", response.data[:200]
    image = Image.open(io.BytesIO(response.data))
    image.load()
    return image


def shown_size(path: str) -> tuple[int, int]:
    return (72, 96) if path.startswith("rotated/") else (96, 72)


def check_explanation(client, body: dict, hit: dict, query_size: tuple[int, int]) -> None:
    hit_size = shown_size(hit["path"])
    assert body["verdict"] == ("similar" if body["verdict_score"] >= body["threshold"] else "dissimilar")
    assert body["similarity"] == pytest.approx(hit["score"], abs=1e-3)  # the pixels give the indexed score
    # Search and explain judge the pair alike: same rule, same normalised score, same verdict.
    assert body["verdict"] == hit["verdict"] and body["verdict_score"] == pytest.approx(hit["verdict_score"], abs=1e-2)
    assert body["verdict_rule"]["kind"] == "default" and body["threshold"] == body["verdict_rule"]["cut"]
    assert body["hit"]["id"] == hit["id"]
    for side, size in (("query", query_size), ("hit", hit_size)):
        assert (body[side]["width"], body[side]["height"]) == size
        for kind in ("factual", "counterfactual"):
            overlay = png(client, body[side][f"{kind}_url"])
            assert overlay.size == size and overlay.mode == "RGB"
            grid = np.asarray(body["raw"][side][kind])
            assert list(grid.shape) == body["raw"][side]["shape"] and grid.min() >= 0 and grid.max() <= 1


def test_explain_an_uploaded_query_by_digest(client, images) -> None:
    searched = upload(client, encode(make_picture(31337, (96, 72))))
    hit = searched["hits"][0]
    response = client.get(hit["explain_url"])
    assert response.status_code == 200 and response.is_json
    body = response.json
    assert body["query"]["key"] == searched["query"]["key"]
    assert body["query"]["image_url"] == searched["query"]["image_url"]
    check_explanation(client, body, hit, (96, 72))


def test_explain_an_indexed_query_by_id_with_exif_rotation(client, images) -> None:
    rotated = images["rotated/rotated.jpg"]
    searched = client.post("/api/search", json={"image_id": rotated.id, "k": 2}).json
    hit = searched["hits"][1]
    response = client.get(f"/api/explain?query={rotated.id}&hit={hit['id']}")
    assert response.status_code == 200
    body = response.json
    assert body["query"]["key"] == str(rotated.id)
    check_explanation(client, body, hit, (72, 96))  # the rotated photo is displayed upright


def test_overlays_depend_on_side_and_kind_and_are_cached(client, images) -> None:
    first, second = images["blobs/blobs_001.jpg"].id, images["stripes/stripes_004.jpg"].id
    body = client.get(f"/api/explain?query={first}&hit={second}").json
    pictures = {(side, kind): np.asarray(png(client, body[side][f"{kind}_url"]), dtype=np.int16)
                for side in ("query", "hit") for kind in ("factual", "counterfactual")}
    assert np.abs(pictures["query", "factual"] - pictures["hit", "factual"]).mean() > 1
    response = client.get(body["query"]["factual_url"])
    assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable" and response.headers["ETag"]
    again = client.get(body["query"]["factual_url"], headers={"If-None-Match": response.headers["ETag"]})
    assert again.status_code == 304
    unversioned = client.get(f"/api/explain/overlay?query={first}&hit={second}&side=hit&kind=factual")
    assert unversioned.status_code == 200 and unversioned.headers["Cache-Control"] == "no-cache"
    stats_before = client.get("/api/stats").json["caches"]
    client.get(f"/api/explain?query={first}&hit={second}")
    stats_after = client.get("/api/stats").json["caches"]
    assert stats_after["explanation_hits"] == stats_before["explanation_hits"] + 1
    assert stats_after["explanation_misses"] == stats_before["explanation_misses"]


def test_heatmap_style_is_the_map_alone_that_blends_into_the_overlay(client, images) -> None:
    first, second = images["blobs/blobs_003.jpg"].id, images["stripes/stripes_001.jpg"].id
    body = client.get(f"/api/explain?query={first}&hit={second}").json
    shown = np.asarray(Image.open(io.BytesIO(client.get(body["hit"]["image_url"]).data)).convert("RGB"), np.float32)
    for kind in ("factual", "counterfactual"):
        url = body["hit"][f"{kind}_url"]
        blended = np.asarray(png(client, url), np.float32)
        heatmap = png(client, f"{url}&style=heatmap")
        assert heatmap.size == (96, 72) and heatmap.mode == "RGB"
        heat = np.asarray(heatmap, np.float32)
        assert np.abs(heat - blended).mean() > 5  # not the blended picture again
        assert np.abs(0.5 * shown + 0.5 * heat - blended).max() <= 1.0  # what a client blending at 50% sees
        assert client.get(f"{url}&style=heatmap").headers["ETag"] != client.get(url).headers["ETag"]
    response = client.get(f"{body['hit']['factual_url']}&style=sepia")
    assert response.status_code == 400 and "style must be one of blended, heatmap" in response.json["error"]


def test_symmetric_pair_has_the_same_similarity(client, images) -> None:
    first, second = images["blobs/blobs_002.jpg"].id, images["stripes/stripes_002.jpg"].id
    forward = client.get(f"/api/explain?query={first}&hit={second}").json
    backward = client.get(f"/api/explain?query={second}&hit={first}").json
    assert forward["similarity"] == pytest.approx(backward["similarity"], abs=1e-5)
    for kind in ("factual", "counterfactual"):  # each image's maps do not depend on its role
        assert np.allclose(forward["raw"]["query"][kind], backward["raw"]["hit"][kind], atol=1e-3)
        assert np.allclose(forward["raw"]["hit"][kind], backward["raw"]["query"][kind], atol=1e-3)


def test_expired_upload_asks_to_upload_again(make_app, built_index) -> None:
    client = make_app(built_index, WHYSIM_UPLOAD_CACHE_SIZE=1).test_client()
    first = upload(client, encode(make_picture(1, (96, 72))))
    upload(client, encode(make_picture(2, (96, 72))))  # pushes the first out of the cache
    for response in (client.get(first["hits"][0]["explain_url"]), client.get(first["query"]["image_url"]),
                     client.post("/api/search", json={"query": first["query"]["key"]})):
        assert response.status_code == 404 and "upload the query again" in response.json["error"]


@pytest.mark.parametrize("query_string, status, message", [
    ("hit=1", 400, "missing parameter 'query'"),
    ("query=1", 400, "missing parameter 'hit'"),
    ("query=abc&hit=1", 400, "query must be an indexed image id"),
    ("query=1&hit=x", 400, "hit must be an integer"),
    ("query=1&hit=987654", 404, "no image with id 987654"),
    ("query=987654&hit=1", 404, "no image with id 987654"),
    ("query=" + "ab" * 32 + "&hit=1", 404, "upload the query again"),
])
def test_explain_errors(client, query_string, status, message) -> None:
    response = client.get(f"/api/explain?{query_string}")
    assert response.status_code == status and message in response.json["error"]


def test_overlay_parameter_errors(client) -> None:
    response = client.get("/api/explain/overlay?query=1&hit=2&side=left&kind=factual")
    assert response.status_code == 400 and "side must be one of query, hit" in response.json["error"]
    response = client.get("/api/explain/overlay?query=1&hit=2&side=hit")
    assert response.status_code == 400 and "missing parameter 'kind'" in response.json["error"]


def test_hit_whose_file_cannot_be_decoded_is_404(client, images) -> None:
    broken = images["broken/truncated.jpg"].id
    response = client.get(f"/api/explain?query={images['blobs/blobs_001.jpg'].id}&hit={broken}")
    assert response.status_code == 404 and "cannot be decoded" in response.json["error"]


def boxes_inside(box: list[int], size: tuple[int, int]) -> bool:
    x0, y0, x1, y1 = box
    return 0 <= x0 < x1 <= size[0] and 0 <= y0 < y1 <= size[1]


def test_explain_returns_matched_regions_whose_shares_sum_to_one(client, images) -> None:
    first, second = images["blobs/blobs_001.jpg"].id, images["rotated/rotated.jpg"].id
    body = client.get(f"/api/explain?query={first}&hit={second}").json
    matches, correspondence = body["matches"], body["correspondence"]
    cells = correspondence["query_grid"][0] * correspondence["query_grid"][1]  # 4: the test model is small
    assert len(matches) == min(5, cells) >= 3 and [m["rank"] for m in matches] == list(range(1, len(matches) + 1))
    assert correspondence["share_sum"] == pytest.approx(1.0, abs=1e-3)
    assert (correspondence["query_size"], correspondence["hit_size"]) == ([96, 72], [72, 96])  # upright, original px
    rows, columns = correspondence["hit_grid"]
    assert len(correspondence["query_to_hit"]) == rows * columns == len(correspondence["hit_to_query"])
    for match in matches:
        assert boxes_inside(match["query_box"], (96, 72)) and boxes_inside(match["hit_box"], (72, 96))
        assert len(match["query_cells"]) == len(match["hit_cells"]) >= 1
        assert set(match["query_cells"] + match["hit_cells"]) <= set(range(rows * columns))
        assert match["share"] == pytest.approx(match["contribution"] / body["similarity"], rel=1e-3, abs=1e-5)
    for side in ("query_cells", "hit_cells"):  # no two pairs share a cell on either side
        cells = [cell for m in matches for cell in m[side]]
        assert len(cells) == len(set(cells))
    order = [m["distinctive"] for m in matches]  # what each hit region adds beyond the collection
    assert order == sorted(order, reverse=True)
    assert len(client.get(f"/api/explain?query={first}&hit={second}&matches=2").json["matches"]) == 2


def test_an_image_explained_against_itself_matches_each_region_to_itself(client, images) -> None:
    image = images["stripes/stripes_002.jpg"].id
    body = client.get(f"/api/explain?query={image}&hit={image}&matches=8").json
    assert body["similarity"] == pytest.approx(1.0, abs=1e-6)
    cells = list(range(len(body["correspondence"]["query_to_hit"])))
    assert body["correspondence"]["query_to_hit"] == cells == body["correspondence"]["hit_to_query"]
    assert all(m["query_cells"] == m["hit_cells"] and m["query_box"] == m["hit_box"] for m in body["matches"])


@pytest.mark.parametrize("value, message", [("0", "matches must be between 1 and 100"),
                                            ("many", "matches must be an integer")])
def test_a_bad_matches_count_is_400(client, images, value, message) -> None:
    first = images["blobs/blobs_001.jpg"].id
    response = client.get(f"/api/explain?query={first}&hit={first}&matches={value}")
    assert response.status_code == 400 and message in response.json["error"]
