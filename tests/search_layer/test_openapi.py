"""The OpenAPI description (generated from the pydantic models) is valid OpenAPI 3.1, covers
exactly the Flask routes under /api, and real responses match its schemas."""
from __future__ import annotations

import io
import re

import pytest
from conftest import encode, make_picture
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate

IGNORED_METHODS = {"HEAD", "OPTIONS"}


@pytest.fixture(scope="module")
def spec(app) -> dict:
    return app.test_client().get("/api/openapi.json").json


def test_description_is_valid_openapi(spec) -> None:
    validate(spec)
    assert spec["openapi"].startswith("3.1")


def test_every_api_route_is_described_and_nothing_else(app, spec) -> None:
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/"):
            path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
            routes |= {(path, method.lower()) for method in rule.methods - IGNORED_METHODS}
    described = {(path, method) for path, operations in spec["paths"].items() for method in operations}
    assert routes == described


def validator(spec: dict, path: str, method: str, status: int, mimetype: str = "application/json"):
    responses = spec["paths"][path][method]["responses"]
    answer = responses.get(str(status), responses.get("default"))
    assert answer is not None, f"{method.upper()} {path} does not document status {status}"
    content = answer["content"]
    assert mimetype in content or "image/*" in content, (path, status, mimetype)
    schema = content.get(mimetype, content.get("image/*"))["schema"]
    return OAS31Validator({**schema, "components": spec["components"]})


def conforms(spec: dict, response, path: str, method: str = "get") -> None:
    check = validator(spec, path, method, response.status_code, response.mimetype)
    if response.mimetype == "application/json":
        check.validate(response.json)


def test_responses_match_their_schemas(client, spec, images) -> None:
    image_id = images["blobs/blobs_001.jpg"].id
    uploaded = client.post("/api/search", data={"image": (io.BytesIO(encode(make_picture(90, (96, 72)))), "q.jpg")})
    conforms(spec, uploaded, "/api/search", "post")
    digest = uploaded.json["query"]["key"]
    by_id = client.post("/api/search", json={"image_id": image_id, "k": 2})
    conforms(spec, by_id, "/api/search", "post")
    conforms(spec, client.post("/api/search", data={"query": digest, "min_score": "0.1"}), "/api/search", "post")
    hit = by_id.json["hits"][0]["id"]
    for query in (digest, str(image_id)):
        explained = client.get(f"/api/explain?query={query}&hit={hit}")
        conforms(spec, explained, "/api/explain")
        conforms(spec, client.get(explained.json["hit"]["factual_url"]), "/api/explain/overlay")
    conforms(spec, client.get(f"/api/queries/{digest}/image"), "/api/queries/{digest}/image")
    conforms(spec, client.get(f"/api/images/{image_id}"), "/api/images/{image_id}")
    conforms(spec, client.get(f"/api/images/{images['broken/truncated.jpg'].id}"), "/api/images/{image_id}")
    conforms(spec, client.get("/api/images?status=all"), "/api/images")
    conforms(spec, client.get(f"/api/images/{image_id}/thumbnail"), "/api/images/{image_id}/thumbnail")
    conforms(spec, client.get(f"/api/images/{image_id}/file"), "/api/images/{image_id}/file")
    conforms(spec, client.get("/api/stats"), "/api/stats")
    conforms(spec, client.get("/api/health"), "/api/health")
    conforms(spec, client.get("/api/openapi.json"), "/api/openapi.json")


def test_error_responses_match_their_schemas(client, spec) -> None:
    conforms(spec, client.post("/api/search", data={"k": "0", "image_id": "1"}), "/api/search", "post")
    conforms(spec, client.post("/api/search", json={"image_id": 987654}), "/api/search", "post")
    conforms(spec, client.post("/api/search", data=b"?", content_type="text/plain"), "/api/search", "post")
    conforms(spec, client.get("/api/explain?query=1"), "/api/explain")
    conforms(spec, client.get("/api/images/987654/file"), "/api/images/{image_id}/file")


def test_upload_limits_are_described(make_app, built_index) -> None:
    spec = make_app(built_index, MAX_CONTENT_LENGTH=12345, WHYSIM_UPLOAD_MAX_PIXELS=999).test_client() \
        .get("/api/openapi.json").json
    multipart = spec["paths"]["/api/search"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert "at most 12345 bytes and 999 pixels" in multipart["schema"]["properties"]["image"]["description"]
