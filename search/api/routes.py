"""The JSON API under /api: search by upload or id, explanations with overlays, images, stats.

The app factory calls `register_api(app, engine, settings)`; views find the services in
`app.extensions[EXTENSION_KEY]`. Each view declares its request and response models
(search/api/models.py) with `@documented`; search/api/openapi.py assembles the document from them.
"""
from __future__ import annotations

import io
import time
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Flask, Response, current_app, request, send_file, url_for
from pydantic import BaseModel
from werkzeug.exceptions import BadRequest

from whysim.indexer.catalog.repository import ImageInfo
from whysim.indexer.catalog.schema import ImageStatus
from whysim.search.api import models
from whysim.search.api import params as api_params
from whysim.search.api.admin import register_admin
from whysim.search.api.admin_auth import has_admin_token
from whysim.search.api.contract import Binary, Operation, documented, validated
from whysim.search.api.errors import error_response, install_app_error_handlers, register_blueprint_errors
from whysim.search.api.fair_use import RateLimits, install_rate_limits
from whysim.search.api.metrics import watch_service
from whysim.search.api.openapi import openapi_document
from whysim.search.api.settings import ApiSettings
from whysim.search.explain.correspondence import box_matches, correspondence_summary
from whysim.search.explain.overlays import png_bytes
from whysim.search.serving.engine import Hit, IndexNotReady, SearchEngine, SearchQuery, UploadedQuery
from whysim.search.serving.explanations import KINDS, SIDES, ExplainedPair, Explanations
from whysim.search.serving.pictures import bytes_digest, image_version
from whysim.search.serving.reindex import ReindexJob
from whysim.search.serving.thumbnails import ServedFile, Thumbnails, served_file
from whysim.search.serving.upload_store import PersistentUploads, UploadFiles

EXTENSION_KEY = "whysim.search"
IMMUTABLE_MAX_AGE = 365 * 24 * 3600
NOT_MODIFIED = ("Not modified (conditional request with a matching ETag).", None)

api = Blueprint("api", __name__, url_prefix="/api")
register_blueprint_errors(api)


@dataclass(frozen=True)
class ApiServices:
    engine: SearchEngine
    uploads: PersistentUploads
    explanations: Explanations
    thumbnails: Thumbnails
    settings: ApiSettings
    models: models.RequestModels  # the request models with this app's limits


def register_api(app: Flask, engine: SearchEngine, settings: ApiSettings) -> ApiServices:
    uploads = PersistentUploads(engine, UploadFiles(engine.datadir.uploads_dir, settings.upload_cache_size),
                                settings.upload_cache_size)
    services = ApiServices(
        engine=engine,
        uploads=uploads,
        explanations=Explanations(engine, uploads, settings.explanation_cache_size, settings.picture_cache_size),
        thumbnails=Thumbnails(engine.datadir.thumbnails_dir, settings.thumbnail_side),
        settings=settings,
        models=models.request_models(settings, app.config.get("MAX_CONTENT_LENGTH")),
    )
    app.extensions[EXTENSION_KEY] = services
    watch_service(app, engine, services.explanations, uploads)
    app.register_blueprint(api)
    install_rate_limits(app, RateLimits.of(settings), {"upload": "api.search", "explain": "api.explain",
                                                       "overlay": "api.explain_overlay"})
    register_admin(app, ReindexJob(engine.datadir, lambda: engine.catalog.collection_roots().values(),
                                   settings.device, settings.runtime))
    install_app_error_handlers(app)
    return services


def services() -> ApiServices:
    return current_app.extensions[EXTENSION_KEY]  # type: ignore[no-any-return]


def route(rule: str, operation: Operation, methods: tuple[str, ...] = ("GET",)) -> Any:
    # No automatic OPTIONS answers: they would be the only non-JSON bodies under /api/.
    def register(view: Any) -> Any:
        return api.route(rule, methods=list(methods), provide_automatic_options=False)(documented(operation)(view))

    return register


def json_response(body: BaseModel, status: int = 200, exclude_none: bool = False) -> Response:
    return Response(body.model_dump_json(exclude_none=exclude_none), status=status, mimetype="application/json")


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


def image_fields(info: ImageInfo) -> dict[str, Any]:
    return {"id": info.id, "path": info.path, "label": info.label, "status": info.status,
            "width": info.width, "height": info.height, "size_bytes": info.size_bytes, "sha256": info.sha256,
            "duplicate_of": info.duplicate_of_id, "error": info.error, **image_links(info)}


def image_model(info: ImageInfo) -> models.Image:
    return models.Image(**image_fields(info))


def hit_model(hit: Hit, rank: int, query_key: str) -> models.Hit:
    return models.Hit(**hit.to_dict(), rank=rank, **image_links(hit.image), width=hit.image.width,
                      height=hit.image.height, size_bytes=hit.image.size_bytes,
                      explain_url=url_for("api.explain", query=query_key, hit=hit.id))


def upload_model(uploaded: UploadedQuery) -> models.UploadQuery:
    return models.UploadQuery(kind="upload", key=uploaded.digest, digest=uploaded.digest,
                              width=uploaded.picture.width, height=uploaded.picture.height,
                              image_url=url_for("api.query_image", digest=uploaded.digest))


def send_served(served: ServedFile, version: str | None, mimetype: str | None = None) -> Response:
    response = send_file(served.path, mimetype=mimetype, conditional=True, etag=served.etag)
    return cached(response, version is not None and served.matches_catalog)


# -------------------------------------------------------------------- search


@dataclass(frozen=True)
class SearchParams:
    upload: bytes | None
    image_id: int | None
    digest: str | None
    k: int
    offset: int
    min_score: float | None


def search_params(request_models: models.RequestModels) -> SearchParams:
    """The body (JSON, form or multipart) checked against its model; k, offset and min_score
    may also come in the query string, which is checked too, and a body field wins over it."""
    fields, typed = api_params.body_fields(request, '{"image_id": 12, "k": 10}')
    paging = validated(request_models.search_paging, request.args)
    body: Any
    if request.mimetype == "multipart/form-data":
        if "image" in fields:
            raise BadRequest(api_params.NOT_A_FILE)  # a text field, not a file
        upload = request.files.get("image")
        body = validated(request_models.search_upload, {**fields, **({"image": upload.read()} if upload else {})})
    else:
        body = validated(request_models.search_json if typed else request_models.search_form, fields)

    def option(name: str) -> Any:
        from_url = getattr(paging, name)
        return getattr(body, name) if name in fields or from_url is None else from_url

    return SearchParams(upload=getattr(body, "image", None), image_id=getattr(body, "image_id", None),
                        digest=getattr(body, "query", None), k=option("k"), offset=option("offset"),
                        min_score=option("min_score"))


def _uploaded(data: bytes) -> UploadedQuery:
    s = services()
    known = s.uploads.peek(bytes_digest(data))
    if known is not None and known.model_key == s.engine.model_key:
        return known  # the same bytes again: no need to decode and embed them twice
    uploaded = s.engine.upload(data)
    s.uploads.keep(uploaded, data)
    return uploaded


def _query(params: SearchParams) -> tuple[SearchQuery, models.UploadQuery | models.ImageQuery]:
    """What to search with, and how to describe it to the client."""
    s = services()
    if params.image_id is not None:
        info = s.engine.image(params.image_id)
        return s.engine.query_for_image(info), models.ImageQuery(kind="image", key=str(info.id), **image_fields(info))
    if params.upload is not None:
        uploaded = _uploaded(params.upload)
    else:
        uploaded = s.uploads.get(params.digest or "", s.engine.model_key)
    return uploaded.query, upload_model(uploaded)


SEARCH = Operation(
    "search", "Search by an uploaded image (multipart), or by image_id / query (form or JSON).",
    {200: ("A page of hits, best first.", models.SearchResponse)}, (400, 404, 413, 415, 429, 503),
    query=lambda m: m.search_paging,
    body={"multipart/form-data": lambda m: m.search_upload,
          "application/x-www-form-urlencoded": lambda m: m.search_form,
          "application/json": lambda m: m.search_json},
    body_required=True)


@route("/search", SEARCH, methods=("POST",))
def search() -> Response:
    s = services()
    params = search_params(s.models)
    started = time.perf_counter()
    query, described = _query(params)
    queried = time.perf_counter()
    page = s.engine.search(query, params.k, params.offset, params.min_score)
    searched = time.perf_counter()
    card = s.engine.snapshot().card
    response = json_response(models.SearchResponse(
        query=described,
        hits=[hit_model(hit, params.offset + rank + 1, described.key) for rank, hit in enumerate(page.hits)],
        k=page.k, offset=page.offset, next_offset=page.next_offset, min_score=params.min_score,
        model=card.short_name() if card else None,
        verdict_rule=models.VerdictRule(**s.engine.verdict_rule().to_dict()),
    ))
    # Shown by browsers' developer tools; lets a benchmark tell the server's work from HTTP's.
    response.headers["Server-Timing"] = (f"query;dur={(queried - started) * 1000:.2f};desc=\"decode+embed or lookup\", "
                                         f"search;dur={(searched - queried) * 1000:.2f}")
    return response


QUERY_IMAGE = Operation(
    "getQueryImage", "The display copy of an uploaded query (JPEG, longest side at most the display size).",
    {200: ("JPEG image.", Binary("image/jpeg")), 304: NOT_MODIFIED}, (400, 404, 503), path=models.DigestPath)


@route("/queries/<digest>/image", QUERY_IMAGE)
def query_image(digest: str) -> Response:
    s = services()
    try:
        ref = api_params.query_ref(digest)
    except api_params.InvalidParameter as exc:
        raise BadRequest(str(exc)) from None
    if isinstance(ref, int):
        return error_response(404, "not an uploaded query's digest")
    uploaded = s.uploads.get(ref, s.engine.model_key)
    buffer = io.BytesIO()
    uploaded.picture.display.save(buffer, "JPEG", quality=90)
    response = Response(buffer.getvalue(), mimetype="image/jpeg")
    response.set_etag(ref[:32])
    return cached(response.make_conditional(request), immutable=True)


# --------------------------------------------------------------- explanations


def _pair(query: str, hit: int) -> ExplainedPair:
    return services().explanations.explain(api_params.query_ref(query), hit)


def _grid(values: Any) -> list[list[float]]:
    return [[round(float(v), 4) for v in row] for row in values]


def _side_urls(pair: ExplainedPair, side: str, image_url: str) -> dict[str, Any]:
    picture = pair.query.picture if side == "query" else pair.hit.picture
    urls = {f"{kind}_url": url_for("api.explain_overlay", query=pair.query.key, hit=pair.hit_id, side=side,
                                   kind=kind, v=pair.version) for kind in KINDS}
    return {"image_url": image_url, "width": picture.display.width, "height": picture.display.height, **urls}


EXPLAIN = Operation(
    "explain", "Paired Grad-CAM explanation of (query, hit): verdict, overlay links and raw maps.",
    {200: ("The explanation.", models.ExplainResponse)}, (400, 404, 429, 503), query=models.ExplainRequest)


def _correspondence(pair: ExplainedPair, count: int) -> dict[str, Any]:
    sizes = ((pair.query.picture.width, pair.query.picture.height), (pair.hit.picture.width, pair.hit.picture.height))
    correspondence = pair.explanation.correspondence
    return {"matches": [models.Match(**match.to_dict()) for match in box_matches(correspondence, count, *sizes)],
            "correspondence": models.Correspondence(**correspondence_summary(correspondence, *sizes))}


@route("/explain", EXPLAIN)
def explain() -> Response:
    asked = validated(models.ExplainRequest, request.args)
    pair = _pair(asked.query, asked.hit)
    explanation = pair.explanation
    query_url = (url_for("api.query_image", digest=pair.query.key) if pair.query.uploaded
                 else url_for("api.image_file", image_id=int(pair.query.key), v=pair.query.version))
    raw = {side: models.RawMaps(shape=list(pair.maps(side).factual.shape),
                                factual=_grid(pair.maps(side).factual),
                                counterfactual=_grid(pair.maps(side).counterfactual)) for side in SIDES}
    return json_response(models.ExplainResponse(
        similarity=round(explanation.similarity, 6), verdict=explanation.verdict,
        threshold=explanation.threshold, verdict_score=round(explanation.verdict_score, 4),
        match=round(explanation.match, 4),
        verdict_rule=models.VerdictRule(**(explanation.rule or {})),
        query=models.ExplainedQuery(key=pair.query.key, **_side_urls(pair, "query", query_url)),
        hit=models.ExplainedHit(id=pair.hit_id, **_side_urls(pair, "hit", url_for(
            "api.image_file", image_id=pair.hit_id, v=pair.hit.version))),
        raw=models.RawPair(**raw), method=explanation.method, **_correspondence(pair, asked.matches),
    ))


OVERLAY = Operation(
    "explainOverlay", "One explanation map, blended over its image or alone, as PNG.",
    {200: ("PNG image, the size of the displayed image.", Binary("image/png")), 304: NOT_MODIFIED},
    (400, 404, 429, 503), query=models.OverlayQuery)


@route("/explain/overlay", OVERLAY)
def explain_overlay() -> Response:
    asked = validated(models.OverlayQuery, request.args)
    pair = _pair(asked.query, asked.hit)
    etag = f"{pair.version}-{asked.side}-{asked.kind}-{asked.style}"
    if request.if_none_match.contains(etag):
        response = Response(status=304)
        response.set_etag(etag)
        return cached(response, asked.v == pair.version)
    response = Response(png_bytes(pair.overlay(asked.side, asked.kind, asked.style)), mimetype="image/png")
    response.set_etag(etag)
    return cached(response, asked.v == pair.version)


# --------------------------------------------------------------------- images


LIST_IMAGES = Operation("listImages", "Catalogued images, by id.", {200: ("A page of images.", models.ImageList)},
                        (400,), query=lambda m: m.image_list)


@route("/images", LIST_IMAGES)
def list_images() -> Response:
    s = services()
    asked: Any = validated(s.models.image_list, request.args)
    rows = s.engine.catalog.list_images(None if asked.status == "all" else ImageStatus(asked.status),
                                        asked.offset, asked.limit + 1)
    return json_response(models.ImageList(
        images=[image_model(info) for info in rows[:asked.limit]], offset=asked.offset, limit=asked.limit,
        next_offset=asked.offset + asked.limit if len(rows) > asked.limit else None))


IMAGE_DETAILS = Operation("getImage", "Catalog details of one image.", {200: ("The image.", models.Image)},
                          (404,), path=models.ImagePath)


@route("/images/<int:image_id>", IMAGE_DETAILS)
def image_details(image_id: int) -> Response:
    return json_response(image_model(services().engine.image(image_id)))


THUMBNAIL = Operation("getThumbnail", "A JPEG thumbnail (made on first request).",
                      {200: ("JPEG thumbnail.", Binary("image/jpeg")), 304: NOT_MODIFIED}, (404,),
                      path=models.ImagePath, query=models.VersionQuery)


@route("/images/<int:image_id>/thumbnail", THUMBNAIL)
def thumbnail(image_id: int) -> Response:
    s = services()
    info = s.engine.image(image_id)
    wanted = request.args.get("v")
    served = s.thumbnails.get(info)
    return send_served(served, wanted if wanted == image_version(info) else None, "image/jpeg")


IMAGE_FILE = Operation("getImageFile", "The original file, served only from inside its collection.",
                       {200: ("The file as stored.", Binary("image/*")), 304: NOT_MODIFIED}, (404,),
                       path=models.ImagePath, query=models.VersionQuery)


@route("/images/<int:image_id>/file", IMAGE_FILE)
def image_file(image_id: int) -> Response:
    info = services().engine.image(image_id)
    wanted = request.args.get("v")
    return send_served(served_file(info), wanted if wanted == image_version(info) else None)


# ------------------------------------------------------------ stats and meta


@route("/stats", Operation("stats", "Counts, model, index and caches (paths only with the admin token).", {200: ("Statistics.", models.Stats)}))
def stats() -> Response:
    s = services()
    catalog = s.engine.catalog
    counts = catalog.status_counts()
    snapshot = s.engine.watcher.current()
    card = snapshot.card
    explanations = s.explanations.cache
    admin = has_admin_token()  # paths on this machine are for the operator, not for any client
    return json_response(models.Stats(
        data_dir=str(s.engine.datadir.root) if admin else None, images=sum(counts.values()), status=counts,
        vectors=len(snapshot.store) if snapshot.store is not None else 0,
        index_type=snapshot.store.kind if snapshot.store is not None else None,
        ready=snapshot.ready, model=card.short_name() if card else None,
        model_card=card.to_dict() if card else None,
        collections=sorted(catalog.collection_roots().values()) if admin else None,
        disk_bytes=s.engine.datadir.disk_bytes(),
        caches={"uploads": len(s.uploads), "explanations": len(explanations),
                "explanation_hits": explanations.hits, "explanation_misses": explanations.misses},
    ))


HEALTH = Operation("health", "Whether an index is ready to search.",
                   {200: ("Ready.", models.Health), 503: ("Not ready; `error` says why.", models.Health)})


@route("/health", HEALTH)
def health() -> Response:
    engine = services().engine
    try:
        snapshot = engine.snapshot()
    except IndexNotReady as exc:
        return json_response(models.Health(status="unavailable", error=str(exc)), 503, exclude_none=True)
    return json_response(models.Health(status="ok", vectors=len(snapshot.store), model=snapshot.card.short_name(),
                                       model_loaded=engine.models.loaded), exclude_none=True)


@route("/openapi.json", Operation("openapi", "This description (OpenAPI 3.1).",
                                  {200: ("OpenAPI 3.1 document.", models.OpenApiDocument)}))
def openapi() -> Response:
    s = services()
    response = Response(mimetype="application/json")
    response.set_data(current_app.json.dumps(openapi_document(current_app, s.models, example_values(s.engine))))
    return response


def example_values(engine: SearchEngine) -> dict[str, Any]:
    """An indexed query and hit, so that a client fuzzing from the document reaches a real pair."""
    rows = engine.catalog.list_images(ImageStatus.INDEXED, 0, 2)
    if len(rows) < 2:
        return {}
    return {"query": str(rows[0].id), "hit": rows[1].id, "image_id": rows[0].id}
