"""JSON errors for everything under /api/: domain errors, HTTP errors (unknown routes and
methods included) and crashes all answer `{"error": "<message>"}` with the right status."""
from __future__ import annotations

import logging
from collections.abc import Callable

from flask import Blueprint, Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound, RequestEntityTooLarge

from whysim.indexer.imaging import ImageRejected, ImageTooLarge
from whysim.indexer.model.loading import ModelLoadError
from whysim.search.serving.decode_budget import DecodeBusy
from whysim.search.serving.engine import IndexNotReady, NotSearchable, UnknownImage
from whysim.search.serving.model_host import ModelBusy
from whysim.search.serving.pictures import ImageUnavailable
from whysim.search.serving.uploads import QueryExpired

logger = logging.getLogger(__name__)

DOMAIN_ERRORS: tuple[tuple[type[Exception], int], ...] = (
    (ImageTooLarge, 413),
    (ImageRejected, 400),
    (UnknownImage, 404),
    (NotSearchable, 404),
    (ImageUnavailable, 404),
    (QueryExpired, 404),
    (IndexNotReady, 503),
    (ModelLoadError, 503),
    (ModelBusy, 503),
    (DecodeBusy, 503),
)


def is_api_path(path: str) -> bool:
    return path == "/api" or path.startswith("/api/")


def error_response(status: int, message: str) -> Response:
    response = jsonify(error=message)
    response.status_code = status
    return response


def _message(error: HTTPException) -> str:
    default = error.description == type(error).description
    if isinstance(error, NotFound) and default:
        return f"no such endpoint: {request.path}"
    if isinstance(error, MethodNotAllowed):
        allowed = ", ".join(sorted(set(error.valid_methods or []) - {"HEAD", "OPTIONS"}))
        return f"{request.method} is not allowed on {request.path}" + (f"; use {allowed}" if allowed else "")
    if isinstance(error, RequestEntityTooLarge):
        limit = current_app.config.get("MAX_CONTENT_LENGTH")
        if not limit:
            return "upload too large"
        return f"upload too large: the limit is {limit / 2**20:.1f} MiB ({limit} bytes)"
    return error.description or error.name


def http_error(error: HTTPException) -> Response:
    response = error_response(error.code or 500, _message(error))
    for name, value in error.get_headers():
        if name.lower() != "content-type":
            response.headers[name] = value  # e.g. Allow on 405
    return response


def _domain_handler(status: int) -> Callable[[Exception], Response]:
    def handle(error: Exception) -> Response:
        response = error_response(status, str(error))
        retry_after = getattr(error, "retry_after_s", None)
        if retry_after is not None:
            response.headers["Retry-After"] = str(retry_after)
        return response

    return handle


def internal_error(error: Exception) -> Response:
    logger.exception("unexpected error on %s %s", request.method, request.path, exc_info=error)
    return error_response(500, "internal server error")


def register_blueprint_errors(blueprint: Blueprint) -> None:
    for exception, status in DOMAIN_ERRORS:
        blueprint.register_error_handler(exception, _domain_handler(status))
    blueprint.register_error_handler(HTTPException, http_error)
    blueprint.register_error_handler(Exception, internal_error)


def install_app_error_handlers(app: Flask) -> None:
    """Routing errors (unknown URL, wrong method) happen before any blueprint is chosen, so
    the app itself must answer them in JSON for /api/ paths; other paths keep Flask's pages."""

    def json_for_api(error: HTTPException) -> Response | HTTPException:
        return http_error(error) if is_api_path(request.path) else error

    app.register_error_handler(HTTPException, json_for_api)
