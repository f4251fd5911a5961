"""The JSON API under /api: search by upload or id, explanations with overlays, images, stats.

The app factory calls `register_api(app, engine, settings)`; views find the services in
`app.extensions[EXTENSION_KEY]`. Routes are described in search/openapi.py (a test keeps the
two in step).
"""
from __future__ import annotations

import io
import time
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request, send_file, url_for

from indexer.catalog.repository import ImageInfo
from indexer.catalog.schema import ImageStatus
from search import api_params
from search.admin_api import register_admin
from search.api_errors import error_response, install_app_error_handlers, register_blueprint_errors
from search.correspondence import DEFAULT_MATCHES, MAX_MATCHES, box_matches, correspondence_summary
from search.engine import Hit, IndexNotReady, SearchEngine, SearchQuery, UploadedQuery
from search.explanations import KINDS, SIDES, STYLES, ExplainedPair, Explanations
from search.openapi import openapi_document
from search.overlays import png_bytes
from search.pictures import bytes_digest, image_version
from search.reindex import ReindexJob
from search.settings import ApiSettings
from search.thumbnails import ServedFile, Thumbnails, served_file
from search.uploads import UploadCache

EXTENSION_KEY = "whysim.search"
IMMUTABLE_MAX_AGE = 365 * 24 * 3600
LIST_STATUSES = (*(status.value for status in ImageStatus), "all")

api = Blueprint("api", __name__, url_prefix="/api")
register_blueprint_errors(api)


@dataclass(frozen=True)
class ApiServices:
    engine: SearchEngine
    uploads: UploadCache
    explanations: Explanations
    thumbnails: Thumbnails
    settings: ApiSettings


def register_api(app: Flask, engine: SearchEngine, settings: ApiSettings) -> ApiServices:
    uploads = UploadCache(settings.upload_cache_size)
    services = ApiServices(
        engine=engine,
        uploads=uploads,
        explanations=Explanations(engine, uploads, settings.explanation_cache_size, settings.picture_cache_size),
        thumbnails=Thumbnails(engine.datadir.thumbnails_dir, settings.thumbnail_side),
        settings=settings,
    )
    app.extensions[EXTENSION_KEY] = services
    app.register_blueprint(api)
    register_admin(app, ReindexJob(engine.datadir, lambda: engine.catalog.collection_roots().values(),
                                   settings.device))
    install_app_error_handlers(app)
    return services


def services() -> ApiServices:
    return current_app.extensions[EXTENSION_KEY]  # type: ignore[no-any-return]


def route(rule: str, methods: tuple[str, ...] = ("GET",)) -> Any:
    # No automatic OPTIONS answers: they would be the only non-JSON bodies under /api/.
    return api.route(rule, methods=list(methods), provide_automatic_options=False)


@api.after_request
def _no_sniffing(response: Response) -> Response:
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    return response


# ------------------------------------------------------------------ helpers


def cached(response: Response, immutable: bool) -> Response:
    """Versioned URLs (the `v` their link carried still matches) are cached for good."""
    if immutable:
        response.cache_control.no_cache = None  # send_file's default
        response.cache_control.public = True
        response.cache_control.max_age = IMMUTABLE_MAX_AGE
        response.cache_control.immutable = True
    else:
        response.cache_control.no_cache = True
    return response


def image_links(info: ImageInfo) -> dict[str, str]:
    version = image_version(info)
    return {"url": url_for("api.image_details", image_id=info.id),
            "thumbnail_url": url_for("api.thumbnail", image_id=info.id, v=version),
            "image_url": url_for("api.image_file", image_id=info.id, v=version)}


def image_json(info: ImageInfo) -> dict[str, Any]:
    return {"id": info.id, "path": info.path, "label": info.label, "status": info.status,
            "width": info.width, "height": info.height, "size_bytes": info.size_bytes, "sha256": info.sha256,
            "duplicate_of": info.duplicate_of_id, "error": info.error, **image_links(info)}


def hit_json(hit: Hit, rank: int, query_key: str) -> dict[str, Any]:
    return {**hit.to_dict(), "rank": rank, **image_links(hit.image),
            "explain_url": url_for("api.explain", query=query_key, hit=hit.id)}


def upload_json(uploaded: UploadedQuery) -> dict[str, Any]:
    return {"kind": "upload", "key": uploaded.digest, "digest": uploaded.digest,
            "width": uploaded.picture.width, "height": uploaded.picture.height,
            "image_url": url_for("api.query_image", digest=uploaded.digest)}


def send_served(served: ServedFile, version: str | None, mimetype: str | None = None) -> Response:
    response = send_file(served.path, mimetype=mimetype, conditional=True, etag=served.etag)
    return cached(response, version is not None and served.matches_catalog)


# -------------------------------------------------------------------- search


def _uploaded(data: bytes) -> UploadedQuery:
    s = services()
    known = s.uploads.peek(bytes_digest(data))
    if known is not None and known.model_key == s.engine.model_key:
        return known  # the same bytes again: no need to decode and embed them twice
    uploaded = s.engine.upload(data)
    s.uploads.add(uploaded)
    return uploaded


def _query(params: api_params.SearchParams) -> tuple[SearchQuery, dict[str, Any]]:
    """What to search with, and how to describe it to the client."""
    s = services()
    if params.image_id is not None:
        info = s.engine.image(params.image_id)
        return s.engine.query_for_image(info), {"kind": "image", "key": str(info.id), **image_json(info)}
    if params.upload is not None:
        uploaded = _uploaded(params.upload)
    else:
        uploaded = s.uploads.get(params.digest or "", s.engine.model_key)
    return uploaded.query, upload_json(uploaded)


@route("/search", methods=("POST",))
def search() -> Response:
    s = services()
    params = api_params.search_params(request, s.settings)
    started = time.perf_counter()
    query, described = _query(params)
    queried = time.perf_counter()
    page = s.engine.search(query, params.k, params.offset, params.min_score)
    searched = time.perf_counter()
    card = s.engine.snapshot().card
    response = jsonify({
        "query": described,
        "hits": [hit_json(hit, params.offset + rank + 1, described["key"]) for rank, hit in enumerate(page.hits)],
        "k": page.k, "offset": page.offset, "next_offset": page.next_offset, "min_score": params.min_score,
        "model": card.short_name() if card else None,
    })
    # Shown by browsers' developer tools; lets a benchmark tell the server's work from HTTP's.
    response.headers["Server-Timing"] = (f"query;dur={(queried - started) * 1000:.2f};desc=\"decode+embed or lookup\", "
                                         f"search;dur={(searched - queried) * 1000:.2f}")
    return response


@route("/queries/<digest>/image")
def query_image(digest: str) -> Response:
    s = services()
    ref = api_params.query_ref(digest)
    if isinstance(ref, int):
        return error_response(404, "not an uploaded query's digest")
    uploaded = s.uploads.get(ref, s.engine.model_key)
    buffer = io.BytesIO()
    uploaded.picture.display.save(buffer, "JPEG", quality=90)
    response = Response(buffer.getvalue(), mimetype="image/jpeg")
    response.set_etag(ref[:32])
    return cached(response.make_conditional(request), immutable=True)


# --------------------------------------------------------------- explanations


def _pair() -> ExplainedPair:
    query = api_params.query_ref(api_params.required(request.args, "query"))
    hit = api_params.image_id(api_params.required(request.args, "hit"), "hit")
    return services().explanations.explain(query, hit)


def _grid(values: Any) -> list[list[float]]:
    return [[round(float(v), 4) for v in row] for row in values]


def _side_json(pair: ExplainedPair, side: str, image_url: str) -> dict[str, Any]:
    picture = pair.query.picture if side == "query" else pair.hit.picture
    urls = {f"{kind}_url": url_for("api.explain_overlay", query=pair.query.key, hit=pair.hit_id, side=side,
                                   kind=kind, v=pair.version) for kind in KINDS}
    return {"image_url": image_url, "width": picture.display.width, "height": picture.display.height, **urls}


def _correspondence_json(pair: ExplainedPair, count: int) -> dict[str, Any]:
    sizes = ((pair.query.picture.width, pair.query.picture.height), (pair.hit.picture.width, pair.hit.picture.height))
    correspondence = pair.explanation.correspondence
    return {"matches": [match.to_dict() for match in box_matches(correspondence, count, *sizes)],
            "correspondence": correspondence_summary(correspondence, *sizes)}


@route("/explain")
def explain() -> Response:
    count = api_params.integer(request.args.get("matches", DEFAULT_MATCHES), "matches", 1, MAX_MATCHES)
    pair = _pair()
    explanation = pair.explanation
    query_url = (url_for("api.query_image", digest=pair.query.key) if pair.query.uploaded
                 else url_for("api.image_file", image_id=int(pair.query.key), v=pair.query.version))
    raw = {side: {"shape": list(pair.maps(side).factual.shape),
                  "factual": _grid(pair.maps(side).factual),
                  "counterfactual": _grid(pair.maps(side).counterfactual)} for side in SIDES}
    return jsonify({
        "similarity": round(explanation.similarity, 6), "verdict": explanation.verdict,
        "threshold": explanation.threshold,
        "query": {"key": pair.query.key, **_side_json(pair, "query", query_url)},
        "hit": {"id": pair.hit_id, **_side_json(pair, "hit", url_for("api.image_file", image_id=pair.hit_id,
                                                                     v=pair.hit.version))},
        "raw": raw,
        "method": explanation.method,
        **_correspondence_json(pair, count),
    })


@route("/explain/overlay")
def explain_overlay() -> Response:
    side = api_params.choice(request.args, "side", SIDES)
    kind = api_params.choice(request.args, "kind", KINDS)
    style = api_params.choice(request.args, "style", STYLES, STYLES[0])
    pair = _pair()
    etag = f"{pair.version}-{side}-{kind}-{style}"
    if request.if_none_match.contains(etag):
        response = Response(status=304)
        response.set_etag(etag)
        return cached(response, request.args.get("v") == pair.version)
    response = Response(png_bytes(pair.overlay(side, kind, style)), mimetype="image/png")
    response.set_etag(etag)
    return cached(response, request.args.get("v") == pair.version)


# --------------------------------------------------------------------- images


@route("/images")
def list_images() -> Response:
    s = services()
    status = api_params.choice(request.args, "status", LIST_STATUSES, ImageStatus.INDEXED.value)
    offset = api_params.integer(request.args.get("offset", 0), "offset", 0, 2**31)
    limit = api_params.integer(request.args.get("limit", 50), "limit", 1, s.settings.max_list_limit)
    rows = s.engine.catalog.list_images(None if status == "all" else ImageStatus(status), offset, limit + 1)
    return jsonify({"images": [image_json(info) for info in rows[:limit]], "offset": offset, "limit": limit,
                    "next_offset": offset + limit if len(rows) > limit else None})


@route("/images/<int:image_id>")
def image_details(image_id: int) -> Response:
    return jsonify(image_json(services().engine.image(image_id)))


@route("/images/<int:image_id>/thumbnail")
def thumbnail(image_id: int) -> Response:
    s = services()
    info = s.engine.image(image_id)
    wanted = request.args.get("v")
    served = s.thumbnails.get(info)
    return send_served(served, wanted if wanted == image_version(info) else None, "image/jpeg")


@route("/images/<int:image_id>/file")
def image_file(image_id: int) -> Response:
    info = services().engine.image(image_id)
    wanted = request.args.get("v")
    return send_served(served_file(info), wanted if wanted == image_version(info) else None)


# ------------------------------------------------------------ stats and meta


@route("/stats")
def stats() -> Response:
    s = services()
    catalog = s.engine.catalog
    counts = catalog.status_counts()
    snapshot = s.engine.watcher.current()
    card = snapshot.card
    explanations = s.explanations.cache
    return jsonify({
        "data_dir": str(s.engine.datadir.root), "images": sum(counts.values()), "status": counts,
        "vectors": len(snapshot.store) if snapshot.store is not None else 0,
        "index_type": snapshot.store.kind if snapshot.store is not None else None,
        "ready": snapshot.ready, "model": card.short_name() if card else None,
        "model_card": card.to_dict() if card else None,
        "collections": sorted(catalog.collection_roots().values()),
        "disk_bytes": s.engine.datadir.disk_bytes(),
        "caches": {"uploads": len(s.uploads), "explanations": len(explanations),
                   "explanation_hits": explanations.hits, "explanation_misses": explanations.misses},
    })


@route("/health")
def health() -> Response:
    engine = services().engine
    try:
        snapshot = engine.snapshot()
    except IndexNotReady as exc:
        response = jsonify(status="unavailable", error=str(exc))
        response.status_code = 503
        return response
    assert snapshot.store is not None and snapshot.card is not None
    return jsonify(status="ok", vectors=len(snapshot.store), model=snapshot.card.short_name(),
                   model_loaded=engine.models.loaded)


@route("/openapi.json")
def openapi() -> Response:
    s = services()
    return jsonify(openapi_document(s.settings, current_app.config.get("MAX_CONTENT_LENGTH")))
