"""Application factory: builds the Flask app for one data directory, mounts the search API and the pages."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from whysim.indexer.datadir import resolve_data_dir
from whysim.search.api.access_log import install_request_log
from whysim.search.api.admin_auth import ADMIN_TOKEN_KEY, check_admin_token
from whysim.search.api.metrics import register_metrics_route
from whysim.search.api.routes import register_api
from whysim.search.api.settings import DEFAULT_MAX_UPLOAD_BYTES, ApiSettings
from whysim.search.serving.decode_budget import DecodeBudget
from whysim.search.serving.engine import SearchEngine
from whysim.webui.pages import register_pages
from whysim.webui.security import CORS_ORIGINS_KEY, install_security

TRUSTED_PROXIES_KEY = "WHYSIM_TRUSTED_PROXIES"
METRICS_ROUTE_KEY = "WHYSIM_METRICS_ROUTE"
DEFAULT_CONFIG: dict[str, Any] = {
    "WHYSIM_DATA_DIR": None,  # None: $WHYSIM_DATA_DIR, else ./whysim-data
    "WHYSIM_CATALOG_URL": None,  # None: $WHYSIM_CATALOG_URL, else SQLite inside the data directory
    "MAX_CONTENT_LENGTH": DEFAULT_MAX_UPLOAD_BYTES,
    ADMIN_TOKEN_KEY: None,  # None: read-only; endpoints that change the collection answer 403 (401 without a token)
    CORS_ORIGINS_KEY: None,  # None: no CORS headers; else the exact origins allowed to call the API
    TRUSTED_PROXIES_KEY: 0,  # reverse proxies in front whose X-Forwarded-For names the client
    METRICS_ROUTE_KEY: True,  # /metrics on this app, behind the admin token (False: served on its own port)
}


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """`config` overrides DEFAULT_CONFIG and the WHYSIM_* limits of whysim.search.api.settings.ApiSettings."""
    app = Flask(__name__)
    app.config.from_mapping(DEFAULT_CONFIG)
    if config:
        app.config.from_mapping(config)
    settings = ApiSettings.from_config(app.config)
    check_admin_token(app.config[ADMIN_TOKEN_KEY])
    install_request_log(app)
    install_security(app)
    datadir = resolve_data_dir(app.config["WHYSIM_DATA_DIR"], app.config["WHYSIM_CATALOG_URL"])
    engine = SearchEngine.open(datadir, device=settings.device, upload_max_pixels=settings.upload_max_pixels,
                               display_side=settings.display_side, check_interval_s=settings.index_check_interval_s,
                               model_queue_size=settings.model_queue_size,
                               decode_budget=DecodeBudget(settings.decode_budget_bytes), runtime=settings.runtime)
    register_api(app, engine, settings)
    register_pages(app)
    if app.config[METRICS_ROUTE_KEY]:
        register_metrics_route(app)
    proxies = int(app.config[TRUSTED_PROXIES_KEY])
    if proxies:  # the client address (rate limits, logs) then comes from X-Forwarded-For
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies)  # type: ignore[method-assign]
    return app
