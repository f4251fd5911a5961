"""`whysim serve`: the web app on werkzeug's threaded server, or on waitress (--production).

Either way the page's URL is printed once the server listens (port 0 picks a free port).
"""
from __future__ import annotations

import ipaddress
import logging
import os
import sys
from pathlib import Path

import click
from flask import Flask
from prometheus_client import start_http_server
from werkzeug.serving import make_server

from whysim.indexer.cli_support import data_dir_options, runtime_option
from whysim.indexer.datadir import resolve_data_dir
from whysim.search.api.access_log import LOGGER_NAME
from whysim.search.api.admin_auth import ADMIN_TOKEN_KEY, MIN_TOKEN_LENGTH
from whysim.search.api.metrics import metrics_of
from whysim.search.api.settings import (
    DEFAULT_MAX_UPLOAD_BYTES,
    LOOPBACK_EXPLAIN_RATE_LIMIT,
    LOOPBACK_OVERLAY_RATE_LIMIT,
    LOOPBACK_UPLOAD_RATE_LIMIT,
    ApiSettings,
)
from whysim.search.serving.memory import use_one_kept_heap
from whysim.webui.app import METRICS_ROUTE_KEY, TRUSTED_PROXIES_KEY, create_app
from whysim.webui.connection_guard import ConnectionPolicy
from whysim.webui.production import DEFAULT_THREADS, serve_production
from whysim.webui.security import CORS_ORIGINS_KEY


@click.command("serve")
@data_dir_options
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--max-upload-mb", type=click.FloatRange(min=0.001), default=DEFAULT_MAX_UPLOAD_BYTES / 2**20,
              show_default=True, help="Largest accepted upload, in MiB.")
@click.option("--max-k", type=click.IntRange(min=1), default=ApiSettings.max_k, show_default=True,
              help="Most hits one search may ask for.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="cpu", show_default=True,
              help="Where queries are embedded and explained.")
@runtime_option
@click.option("--production", is_flag=True,
              help="Serve with waitress (threaded production WSGI server) instead of Flask's development server.")
@click.option("--threads", type=click.IntRange(min=1), default=DEFAULT_THREADS, show_default=True,
              help="Request threads of the production server.")
@click.option("--admin-token-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help=f"A file whose first line is the admin token (or set ${ADMIN_TOKEN_KEY}): enables the endpoints "
                   f"that change the collection (POST /api/index/refresh) for clients sending 'Authorization: "
                   f"Bearer TOKEN'; at least {MIN_TOKEN_LENGTH} characters. Without it the server is read-only. "
                   "(Not on the command line: anyone who can run `ps` would read it there.)")
@click.option("--admin-token", "admin_token_argument", hidden=True, default=None, expose_value=True)
@click.option("--cors-origin", "cors_origins", multiple=True, metavar="ORIGIN",
              help="An origin (https://host[:port]) whose pages may call the API; repeat for more. "
                   "Default: none (no CORS headers).")
@click.option("--rate-limits/--no-rate-limits", default=True, show_default=True,
              help="Per-client limits on uploads, explanations and overlays (429 with Retry-After when "
                   "exceeded); clients sending the admin token are exempt.")
@click.option("--upload-limit", default=None, metavar="RATE",
              help=f"Searches by upload per client, e.g. '20/minute' or '5/second;100/hour' (default "
                   f"{ApiSettings.upload_rate_limit}; {LOOPBACK_UPLOAD_RATE_LIMIT} on a loopback-only server).")
@click.option("--explain-limit", default=None, metavar="RATE",
              help=f"Explanations (/api/explain) per client (default {ApiSettings.explain_rate_limit}; "
                   f"{LOOPBACK_EXPLAIN_RATE_LIMIT} on a loopback-only server).")
@click.option("--overlay-limit", default=None, metavar="RATE",
              help=f"Overlay images (/api/explain/overlay) per client; the page loads 4 per explanation (default "
                   f"{ApiSettings.overlay_rate_limit}; {LOOPBACK_OVERLAY_RATE_LIMIT} on a loopback-only server).")
@click.option("--rate-limit-storage", default=ApiSettings.rate_limit_storage, show_default=True, metavar="URI",
              help="Where the rate limits' windows are counted: this process's memory, or a store several servers "
                   "share, so that a client gets the rate once behind a load balancer (a Flask-Limiter storage "
                   "URI, e.g. redis://HOST:6379 or memcached://HOST:11211; needs that store's Python client).")
@click.option("--model-queue", type=click.IntRange(min=1), default=ApiSettings.model_queue_size, show_default=True,
              help="Uploads and explanations that may wait for the model at once; more get 503 with Retry-After.")
@click.option("--trusted-proxies", type=click.IntRange(min=0), default=0, show_default=True,
              help="Reverse proxies in front of the server: the client address (rate limits, access log) is "
                   "then read from the X-Forwarded-For they set. 0: the connection's address.")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=None,
              help="Serve Prometheus /metrics on this port (of --metrics-host) instead of on the public port, "
                   "where it needs the admin token. Default: public port, admin token.")
@click.option("--metrics-host", default="127.0.0.1", show_default=True, help="Interface of --metrics-port.")
@click.option("--access-log/--no-access-log", default=True, show_default=True,
              help="One logfmt line per request on standard error (logger whysim.access).")
@click.option("--connections-per-client", type=click.IntRange(min=0), default=ConnectionPolicy.per_client,
              show_default=True, help="Open connections one client address may hold under --production (0: no cap; "
                                      "off with --trusted-proxies, where the proxy limits clients).")
def serve_command(data_dir: Path, catalog_url: str | None, host: str, port: int, max_upload_mb: float,
                  max_k: int, device: str, runtime: str, production: bool, threads: int,
                  admin_token_file: Path | None, admin_token_argument: str | None,
                  cors_origins: tuple[str, ...], rate_limits: bool, upload_limit: str | None,
                  explain_limit: str | None, overlay_limit: str | None, rate_limit_storage: str,
                  model_queue: int, trusted_proxies: int, metrics_port: int | None, metrics_host: str,
                  access_log: bool, connections_per_client: int) -> None:
    """Serve the search page and the JSON API (under /api/) for a data directory."""
    admin_token = read_admin_token(admin_token_file, admin_token_argument)
    configure_access_log(access_log)
    use_one_kept_heap()
    defaults = ApiSettings().for_loopback() if loopback_only(host, trusted_proxies) else ApiSettings()
    upload_limit = upload_limit or defaults.upload_rate_limit
    explain_limit = explain_limit or defaults.explain_rate_limit
    overlay_limit = overlay_limit or defaults.overlay_rate_limit
    datadir = resolve_data_dir(data_dir, catalog_url)
    try:
        app = create_app({
            "WHYSIM_DATA_DIR": str(datadir.root), "WHYSIM_CATALOG_URL": datadir.catalog_url_override,
            "MAX_CONTENT_LENGTH": int(max_upload_mb * 2**20), "WHYSIM_MAX_K": max_k, "WHYSIM_DEVICE": device, "WHYSIM_RUNTIME": runtime,
            ADMIN_TOKEN_KEY: admin_token or None, CORS_ORIGINS_KEY: list(cors_origins) or None,
            "WHYSIM_RATE_LIMITS": rate_limits, "WHYSIM_UPLOAD_RATE_LIMIT": upload_limit,
            "WHYSIM_EXPLAIN_RATE_LIMIT": explain_limit, "WHYSIM_OVERLAY_RATE_LIMIT": overlay_limit,
            "WHYSIM_RATE_LIMIT_STORAGE": rate_limit_storage,
            "WHYSIM_MODEL_QUEUE_SIZE": model_queue, TRUSTED_PROXIES_KEY: trusted_proxies,
            METRICS_ROUTE_KEY: metrics_port is None,
        })
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    if metrics_port is not None:
        serve_metrics(app, metrics_host, metrics_port)
    access = "admin endpoints enabled" if admin_token else "read-only"
    if production:
        serve_production(app, host, port, threads,
                         lambda port_bound: click.echo(f"serving {datadir.root} at {page_url(host, port_bound)} "
                                                       f"(waitress, {threads} threads, {access}; Ctrl-C to stop)"),
                         ConnectionPolicy(per_client=connections_per_client))
        return
    # When it cannot listen (port taken, address not ours), werkzeug says why and exits with 1.
    server = make_server(host, port, app, threaded=True)
    click.echo(f"serving {datadir.root} at {page_url(host, server.server_port)} "
               f"(development server, {access}; Ctrl-C to stop)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        click.echo("stopped")
    finally:
        server.server_close()


def loopback_only(host: str, trusted_proxies: int) -> bool:
    """Only this machine reaches the server: it listens on a loopback address, with no proxy in front
    relaying other people's requests."""
    if trusted_proxies:
        return False
    try:
        return host == "localhost" or ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def read_admin_token(path: Path | None, argument: str | None) -> str | None:
    """The token from its file, else from the environment; never from the command line."""
    if argument is not None:
        raise click.UsageError(f"--admin-token is not accepted: anyone who can run `ps` would read the token on the "
                               f"command line. Put it in a file (--admin-token-file PATH) or in ${ADMIN_TOKEN_KEY}.")
    if path is None:
        return os.environ.get(ADMIN_TOKEN_KEY) or None
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise click.ClickException(f"cannot read the admin token from {path}: {exc}") from exc
    token = lines[0].strip() if lines else ""
    if not token:
        raise click.ClickException(f"{path} is empty: its first line must be the admin token")
    return token


def configure_access_log(enabled: bool) -> None:
    """Our access lines on stderr, bare; werkzeug's own request lines would only repeat them."""
    access = logging.getLogger(LOGGER_NAME)
    access.propagate = False
    if not enabled:
        access.disabled = True
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)


def serve_metrics(app: Flask, host: str, port: int) -> None:
    """Prometheus's own small HTTP server for /metrics, in a daemon thread."""
    try:
        server, _ = start_http_server(port, addr=host, registry=metrics_of(app).registry)
    except OSError as exc:
        raise click.ClickException(f"cannot serve metrics on {host}:{port}: {exc}") from exc
    click.echo(f"metrics at {page_url(host, server.server_port)}metrics")


def page_url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"
