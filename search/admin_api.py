"""Endpoints that change the collection, under /api/index; each needs the admin token."""
from __future__ import annotations

from flask import Blueprint, Flask, Response, current_app, jsonify, request, url_for

from search import api_params
from search.admin_auth import admin_token_required
from search.api_errors import error_response, register_blueprint_errors
from search.reindex import ReindexBusy, ReindexJob

EXTENSION_KEY = "whysim.reindex"

admin = Blueprint("admin", __name__, url_prefix="/api/index")
register_blueprint_errors(admin)


def register_admin(app: Flask, job: ReindexJob) -> None:
    app.extensions[EXTENSION_KEY] = job
    app.register_blueprint(admin)


def reindex_job() -> ReindexJob:
    return current_app.extensions[EXTENSION_KEY]  # type: ignore[no-any-return]


def requested_prune() -> bool:
    """`prune` from a JSON or form body, or the query string; false when absent."""
    if request.mimetype == "application/json":
        body = api_params.json_object(request, '{"prune": true}')
        return api_params.boolean(body.get("prune", False), "prune", typed=True)
    value = request.form.get("prune", request.args.get("prune"))
    return False if value in (None, "") else api_params.boolean(value, "prune")


@admin.route("/refresh", methods=["POST"], provide_automatic_options=False)
@admin_token_required
def start_refresh() -> Response:
    try:
        status = reindex_job().start(prune=requested_prune())
    except ReindexBusy as exc:
        return error_response(409, str(exc))
    response = jsonify(status.to_dict())
    response.status_code = 202
    response.headers["Location"] = url_for("admin.refresh_status")
    return response


@admin.route("/refresh", methods=["GET"], provide_automatic_options=False)
@admin_token_required
def refresh_status() -> Response:
    return jsonify(reindex_job().status().to_dict())
