"""Endpoints that change the collection, under /api/index; each needs the admin token."""
from __future__ import annotations

from flask import Blueprint, Flask, Response, current_app, request, url_for

from whysim.search.api import models
from whysim.search.api import params as api_params
from whysim.search.api.admin_auth import admin_token_required
from whysim.search.api.contract import Operation, documented, validated
from whysim.search.api.errors import error_response, register_blueprint_errors
from whysim.search.serving.reindex import ReindexBusy, ReindexJob

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
        return validated(models.RefreshJson, api_params.json_object(request, '{"prune": true}')).prune
    fields = {name: value for name, value in (("prune", request.args.get("prune")),
                                              ("prune", request.form.get("prune"))) if value is not None}
    return validated(models.RefreshForm, fields).prune


def status_json(status: object, code: int = 200) -> Response:
    body = models.ReindexStatus.model_validate(status.to_dict())  # type: ignore[attr-defined]
    return Response(body.model_dump_json(), status=code, mimetype="application/json")


START = Operation("startReindex", "Start an incremental re-index of every served collection (needs the admin token).",
                  {202: ("Started; poll GET /api/index/refresh.", models.ReindexStatus)}, (400, 401, 403, 409),
                  body={"application/json": models.RefreshJson,
                        "application/x-www-form-urlencoded": models.RefreshForm}, secured=True)
STATUS = Operation("reindexStatus", "State of the last re-index started by this server (needs the admin token).",
                   {200: ("The job's state and per-collection reports.", models.ReindexStatus)}, (401, 403),
                   secured=True)


@admin.route("/refresh", methods=["POST"], provide_automatic_options=False)
@documented(START)
@admin_token_required
def start_refresh() -> Response:
    try:
        status = reindex_job().start(prune=requested_prune())
    except ReindexBusy as exc:
        return error_response(409, str(exc))
    response = status_json(status, 202)
    response.headers["Location"] = url_for("admin.refresh_status")
    return response


@admin.route("/refresh", methods=["GET"], provide_automatic_options=False)
@documented(STATUS)
@admin_token_required
def refresh_status() -> Response:
    return status_json(reindex_job().status())
