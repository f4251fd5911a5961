"""OpenAPI 3.0 description of the /api routes, with the limits the running app enforces.

tests/test_openapi.py checks that every Flask route under /api is described here (and the
reverse) and validates real responses against these schemas.
"""
from __future__ import annotations

from typing import Any

from search.admin_auth import SECURITY_SCHEME
from search.engine import MAX_IMAGE_ID
from search.correspondence import DEFAULT_MATCHES, MAX_MATCHES
from search.explaining import METHODS
from search.explanations import KINDS, SIDES, STYLES
from search.settings import ApiSettings

STATUSES = ["pending", "indexed", "duplicate", "failed"]
DIGEST_PATTERN = "^[0-9a-fA-F]{64}$"
QUERY_REF_PATTERN = "^([0-9a-fA-F]{64}|[0-9]+)$"

ERROR_TEXT = {
    "400": "Bad request: a malformed parameter or an image that cannot be decoded.",
    "404": "Unknown image id, image without a vector or file, or an uploaded query no longer held.",
    "413": "Upload larger than the byte limit, or an image with more pixels than allowed.",
    "401": "Missing or wrong admin token (send `Authorization: Bearer <token>`).",
    "403": "The server is read-only: no admin token is configured.",
    "409": "A re-index is already running (this server's, or another `whysim index` on the data directory).",
    "415": "Unsupported request body type.",
    "503": "No searchable index yet (or a rebuild in progress), or the model cannot be loaded.",
}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


def json_response(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def binary_response(description: str, media_type: str) -> dict[str, Any]:
    return {"description": description, "content": {media_type: {"schema": {"type": "string", "format": "binary"}}}}


def errors(*codes: str) -> dict[str, Any]:
    answers = {code: json_response(ERROR_TEXT[code], ref("Error")) for code in codes}
    answers["default"] = json_response("Any other error (JSON, with a message).", ref("Error"))
    return answers


def param(name: str, where: str, schema: dict[str, Any], description: str, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": where, "required": required or where == "path", "schema": schema,
            "description": description}


def operation(summary: str, operation_id: str, responses: dict[str, Any],
              parameters: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    found = {"summary": summary, "operationId": operation_id, "responses": responses, **extra}
    if parameters:
        found["parameters"] = parameters
    return found


def _schemas(settings: ApiSettings) -> dict[str, Any]:
    string, integer = {"type": "string"}, {"type": "integer"}
    links = {"url": string, "thumbnail_url": string, "image_url": string}
    image_properties = {
        "id": integer, "path": string, "label": nullable(string), "status": {"type": "string", "enum": STATUSES},
        "width": nullable(integer), "height": nullable(integer), "size_bytes": integer, "sha256": nullable(string),
        "duplicate_of": nullable(integer), "error": nullable(string), **links,
    }
    grid = {"type": "array", "items": {"type": "array", "items": {"type": "number", "minimum": 0, "maximum": 1}}}
    box = {"type": "array", "items": integer, "minItems": 4, "maxItems": 4}
    pair_of_ints = {"type": "array", "items": integer, "minItems": 2, "maxItems": 2}
    cell = {"type": "integer", "minimum": 0}
    side_urls = {"image_url": string, "width": integer, "height": integer,
                 "factual_url": string, "counterfactual_url": string}
    return {
        "Error": {"type": "object", "required": ["error"], "properties": {"error": string}},
        "Image": {"type": "object", "required": list(image_properties), "properties": image_properties},
        "Hit": {"type": "object",
                "required": ["id", "path", "label", "score", "rank", *links, "explain_url"],
                "properties": {"id": integer, "path": string, "label": nullable(string),
                               "score": {"type": "number", "minimum": -1, "maximum": 1,
                                         "description": "Cosine similarity to the query."},
                               "rank": {"type": "integer", "minimum": 1}, **links, "explain_url": string}},
        "UploadQuery": {"type": "object", "required": ["kind", "key", "digest", "width", "height", "image_url"],
                        "properties": {"kind": {"type": "string", "enum": ["upload"]},
                                       "key": {**string, "description": "Pass as `query` to /api/explain and "
                                                                        "/api/search (the SHA-256 digest)."},
                                       "digest": string, "width": integer, "height": integer, "image_url": string}},
        "ImageQuery": {"allOf": [ref("Image"), {
            "type": "object", "required": ["kind", "key"],
            "properties": {"kind": {"type": "string", "enum": ["image"]},
                           "key": {**string,
                                   "description": "The image id as text; pass as `query` to /api/explain."}}}]},
        "SearchResponse": {
            "type": "object", "required": ["query", "hits", "k", "offset", "next_offset", "min_score", "model"],
            "properties": {
                "query": {"oneOf": [ref("UploadQuery"), ref("ImageQuery")]},
                "hits": {"type": "array", "items": ref("Hit"), "maxItems": settings.max_k},
                "k": integer, "offset": integer,
                "next_offset": nullable({**integer, "description": "Offset of the next page; null at the end."}),
                "min_score": nullable({"type": "number"}), "model": nullable(string)}},
        "RawMaps": {"type": "object", "required": ["shape", "factual", "counterfactual"],
                    "properties": {"shape": {"type": "array", "items": integer, "minItems": 2, "maxItems": 2},
                                   "factual": grid, "counterfactual": grid}},
        "Match": {"type": "object",
                  "required": ["rank", "query_box", "hit_box", "share", "contribution", "query_cell", "hit_cell"],
                  "properties": {
                      "rank": {"type": "integer", "minimum": 1},
                      "query_box": {**box, "description": "[x0, y0, x1, y1] in the original query's pixels."},
                      "hit_box": {**box, "description": "[x0, y0, x1, y1] in the original hit's pixels."},
                      "share": {"type": "number", "description": "This pair's part of the similarity divided by "
                                                                 "the similarity; all pairs' shares sum to 1."},
                      "contribution": {"type": "number", "description": "This pair's part of the similarity."},
                      "query_cell": cell, "hit_cell": cell}},
        "Correspondence": {
            "type": "object",
            "required": ["query_grid", "hit_grid", "query_size", "hit_size", "query_to_hit", "hit_to_query",
                         "exact", "remainder", "share_sum"],
            "description": "For every cell of each image's feature grid (row-major), the cell of the other "
                           "image it matches: what a client lights up on hover.",
            "properties": {"query_grid": pair_of_ints, "hit_grid": pair_of_ints,
                           "query_size": {**pair_of_ints, "description": "[width, height] of the original."},
                           "hit_size": {**pair_of_ints, "description": "[width, height] of the original."},
                           "query_to_hit": {"type": "array", "items": cell},
                           "hit_to_query": {"type": "array", "items": cell},
                           "exact": {"type": "boolean",
                                     "description": "False when a non-linear head was linearised."},
                           "remainder": {"type": "number", "minimum": 0,
                                         "description": "Largest share of a head output spread as a "
                                                        "linearisation remainder (0 when exact)."},
                           "share_sum": {"type": "number", "description": "Sum of all pairs' shares (1)."}}},
        "ExplainResponse": {
            "type": "object", "required": ["similarity", "verdict", "threshold", "query", "hit", "raw", "method",
                                           "matches", "correspondence"],
            "properties": {
                "similarity": {"type": "number"}, "verdict": {"type": "string", "enum": ["similar", "dissimilar"]},
                "threshold": {"type": "number"},
                "query": {"type": "object", "required": ["key", *side_urls],
                          "properties": {"key": string, **side_urls}},
                "hit": {"type": "object", "required": ["id", *side_urls], "properties": {"id": integer, **side_urls}},
                "raw": {"type": "object", "required": list(SIDES),
                        "description": "Low-resolution maps in [0, 1] for clients that draw their own overlays.",
                        "properties": {side: ref("RawMaps") for side in SIDES}},
                "method": {"type": "string", "enum": list(METHODS), "description": "How the maps were made."},
                "matches": {"type": "array", "items": ref("Match"),
                            "description": "The top pairs of regions (query cell, the hit cell it matches), "
                                           "by their part of the similarity."},
                "correspondence": ref("Correspondence")}},
        "ImageList": {"type": "object", "required": ["images", "offset", "limit", "next_offset"],
                      "properties": {"images": {"type": "array", "items": ref("Image")}, "offset": integer,
                                     "limit": integer, "next_offset": nullable(integer)}},
        "Stats": {"type": "object",
                  "required": ["data_dir", "images", "status", "vectors", "index_type", "ready", "model",
                               "model_card", "collections", "disk_bytes", "caches"],
                  "properties": {"data_dir": string, "images": integer,
                                 "status": {"type": "object", "additionalProperties": integer},
                                 "vectors": integer, "index_type": nullable(string), "ready": {"type": "boolean"},
                                 "model": nullable(string), "model_card": nullable({"type": "object"}),
                                 "collections": {"type": "array", "items": string}, "disk_bytes": integer,
                                 "caches": {"type": "object", "additionalProperties": integer}}},
        "ReindexStatus": {
            "type": "object", "required": ["state", "prune", "started_at", "finished_at", "collections", "error"],
            "properties": {"state": {"type": "string", "enum": ["idle", "running", "succeeded", "failed"]},
                           "prune": {"type": "boolean"}, "started_at": nullable(string),
                           "finished_at": nullable(string), "error": nullable(string),
                           "collections": {"type": "array", "items": {
                               "type": "object", "required": ["root"],
                               "properties": {"root": string, "report": {"type": "object"}, "error": string}}}}},
        "Health": {"type": "object", "required": ["status"],
                   "properties": {"status": {"type": "string", "enum": ["ok", "unavailable"]},
                                  "vectors": integer, "model": string, "model_loaded": {"type": "boolean"},
                                  "error": string}},
    }


def _search_fields(settings: ApiSettings) -> dict[str, dict[str, Any]]:
    return {
        "k": {"type": "integer", "minimum": 1, "maximum": settings.max_k, "default": settings.default_k,
              "description": "Number of hits per page."},
        "offset": {"type": "integer", "minimum": 0, "maximum": settings.max_offset, "default": 0,
                   "description": "Hits to skip (use `next_offset` of the previous page)."},
        "min_score": {"type": "number", "minimum": -1, "maximum": 1,
                      "description": "Leave out hits whose cosine similarity is lower."},
    }


def _search_operations(settings: ApiSettings, max_upload_bytes: int | None) -> dict[str, Any]:
    fields = _search_fields(settings)
    image_id = {"type": "integer", "minimum": 1, "maximum": MAX_IMAGE_ID,
                "description": "Search with the stored vector of this indexed image (left out of the hits)."}
    digest = {"type": "string", "pattern": DIGEST_PATTERN,
              "description": "Search again with an earlier upload, by its digest (`query.key`)."}
    limit = f" (at most {max_upload_bytes} bytes and {settings.upload_max_pixels} pixels)" if max_upload_bytes else ""
    upload = {"type": "object", "required": ["image"],
              "properties": {"image": {"type": "string", "format": "binary",
                                       "description": f"The query image file{limit}."}, **fields}}
    by_reference = {"type": "object", "properties": {"image_id": image_id, "query": digest, **fields},
                    "oneOf": [{"required": ["image_id"]}, {"required": ["query"]}]}
    return {
        "post": operation(
            "Search by an uploaded image (multipart), or by image_id / query (form or JSON).", "search",
            {"200": json_response("A page of hits, best first.", ref("SearchResponse")),
             **errors("400", "404", "413", "415", "503")},
            [param(name, "query", schema, f"{schema['description']} Also accepted here; a body field wins.")
             for name, schema in fields.items()],
            requestBody={"required": True, "content": {
                "multipart/form-data": {"schema": upload},
                "application/x-www-form-urlencoded": {"schema": by_reference},
                "application/json": {"schema": by_reference}}}),
    }


def _admin_operations() -> dict[str, Any]:
    secured = {"security": [{SECURITY_SCHEME: []}]}
    prune = {"type": "object", "properties": {"prune": {
        "type": "boolean", "default": False, "description": "Also drop the images whose files are gone."}}}
    return {
        "post": operation(
            "Start an incremental re-index of every served collection (needs the admin token).", "startReindex",
            {"202": json_response("Started; poll GET /api/index/refresh.", ref("ReindexStatus")),
             **errors("400", "401", "403", "409")}, None,
            requestBody={"required": False, "content": {"application/json": {"schema": prune},
                                                        "application/x-www-form-urlencoded": {"schema": prune}}},
            **secured),
        "get": operation(
            "State of the last re-index started by this server (needs the admin token).", "reindexStatus",
            {"200": json_response("The job's state and per-collection reports.", ref("ReindexStatus")),
             **errors("401", "403")}, **secured),
    }


def openapi_document(settings: ApiSettings, max_upload_bytes: int | None) -> dict[str, Any]:
    image_id = param("image_id", "path", {"type": "integer", "minimum": 1}, "Catalog id of the image.")
    version = param("v", "query", {"type": "string"},
                    "Content version from the link; when it matches, the response may be cached for good.")
    query_ref = param("query", "query", {"type": "string", "pattern": QUERY_REF_PATTERN},
                      "The query: an uploaded query's digest or an indexed image's id (`query.key` of a search).",
                      required=True)
    hit = param("hit", "query", {"type": "integer", "minimum": 1, "maximum": MAX_IMAGE_ID},
                "Id of the hit image.", required=True)
    not_modified = {"304": {"description": "Not modified (conditional request with a matching ETag)."}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "whysim search API", "version": "1.0.0",
                 "description": "Image similarity search with paired Grad-CAM explanations. Every response "
                                "under /api/ that is not an image is JSON; errors are {\"error\": message}."},
        "paths": {
            "/api/search": _search_operations(settings, max_upload_bytes),
            "/api/queries/{digest}/image": {"get": operation(
                "The display copy of an uploaded query (JPEG, longest side at most the display size).",
                "getQueryImage", {"200": binary_response("JPEG image.", "image/jpeg"), **not_modified,
                                  **errors("400", "404", "503")},
                [param("digest", "path", {"type": "string", "pattern": DIGEST_PATTERN}, "The upload's digest.")])},
            "/api/explain": {"get": operation(
                "Paired explanation of (query, hit): verdict, overlay links, raw maps, matched regions.",
                "explain", {"200": json_response("The explanation.", ref("ExplainResponse")),
                            **errors("400", "404", "503")},
                [query_ref, hit,
                 param("matches", "query", {"type": "integer", "minimum": 1, "maximum": MAX_MATCHES,
                                            "default": DEFAULT_MATCHES},
                       "How many top pairs of matched regions to return (fewer when the grid has fewer cells).")])},
            "/api/explain/overlay": {"get": operation(
                "One explanation map, blended over its image or alone, as PNG.", "explainOverlay",
                {"200": binary_response("PNG image, the size of the displayed image.", "image/png"), **not_modified,
                 **errors("400", "404", "503")},
                [query_ref, hit,
                 param("side", "query", {"type": "string", "enum": list(SIDES)}, "Whose map.", required=True),
                 param("kind", "query", {"type": "string", "enum": list(KINDS)},
                       "factual: evidence for the verdict; counterfactual: evidence against it.", required=True),
                 param("style", "query", {"type": "string", "enum": list(STYLES), "default": STYLES[0]},
                       "blended: the map over the image; heatmap: the colour map alone (same size), "
                       "for a client that blends it over the image itself."),
                 version])},
            "/api/images": {"get": operation(
                "Catalogued images, by id.", "listImages",
                {"200": json_response("A page of images.", ref("ImageList")), **errors("400")},
                [param("status", "query", {"type": "string", "enum": [*STATUSES, "all"], "default": "indexed"},
                       "Only images with this status."),
                 param("offset", "query", {"type": "integer", "minimum": 0, "maximum": 2**31, "default": 0},
                       "Images to skip."),
                 param("limit", "query", {"type": "integer", "minimum": 1, "maximum": settings.max_list_limit,
                                          "default": 50}, "Page size.")])},
            "/api/images/{image_id}": {"get": operation(
                "Catalog details of one image.", "getImage",
                {"200": json_response("The image.", ref("Image")), **errors("404")}, [image_id])},
            "/api/images/{image_id}/thumbnail": {"get": operation(
                "A JPEG thumbnail (made on first request).", "getThumbnail",
                {"200": binary_response("JPEG thumbnail.", "image/jpeg"), **not_modified, **errors("404")},
                [image_id, version])},
            "/api/images/{image_id}/file": {"get": operation(
                "The original file, served only from inside its collection.", "getImageFile",
                {"200": binary_response("The file as stored.", "image/*"), **not_modified, **errors("404")},
                [image_id, version])},
            "/api/stats": {"get": operation(
                "Counts, model, index and caches.", "stats",
                {"200": json_response("Statistics.", ref("Stats")), **errors()})},
            "/api/health": {"get": operation(
                "Whether an index is ready to search.", "health",
                {"200": json_response("Ready.", ref("Health")),
                 "503": json_response("Not ready; `error` says why.", ref("Health")), **errors()})},
            "/api/index/refresh": _admin_operations(),
            "/api/openapi.json": {"get": operation(
                "This description.", "openapi",
                {"200": json_response("OpenAPI 3.0 document.", {"type": "object"}), **errors()})},
        },
        "components": {"schemas": _schemas(settings),
                       "securitySchemes": {SECURITY_SCHEME: {
                           "type": "http", "scheme": "bearer",
                           "description": "The server's admin token (whysim serve --admin-token); without "
                                          "one configured, the server is read-only."}}},
    }
