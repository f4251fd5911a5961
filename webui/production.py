"""`whysim serve --production`: the app behind waitress, a threaded pure-Python WSGI server.

Why waitress and not a pre-forking server such as gunicorn: whysim keeps its state in one
process on purpose. The model runs on one dedicated thread (search/serving/model_host.py), and uploaded
queries and explanations are cached in that process's memory, so that a client can page and
ask for explanations without uploading again. N forked workers would load N copies of the
model, compete for the same cores with N torch thread teams, and answer "upload again" whenever
a follow-up request lands on another worker. One process with a pool of request threads keeps
one model and one cache; waitress also buffers each request body fully (large ones in an
anonymous temporary file) before a thread sees it, so slow clients cannot hold threads, and it
never shows tracebacks. Slow and idle clients cannot hold its connections either: see
webui/connection_guard.py.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from flask import Flask

from whysim.webui.app import TRUSTED_PROXIES_KEY
from whysim.webui.connection_guard import ConnectionPolicy, GuardedServer, guarded_server

DEFAULT_THREADS = 8
# waitress refuses bodies over this with its own 413 (JSON: connection_guard.py) before the app sees them;
# bodies between the app's MAX_CONTENT_LENGTH and this get the app's JSON 413.
BODY_LIMIT_FACTOR = 2
BODY_LIMIT_MARGIN = 1 << 20


def body_limit(app: Flask) -> int:
    max_content = app.config.get("MAX_CONTENT_LENGTH") or (1 << 30)
    return int(max_content) * BODY_LIMIT_FACTOR + BODY_LIMIT_MARGIN


def production_server(app: Flask, host: str, port: int, threads: int = DEFAULT_THREADS,
                      policy: ConnectionPolicy | None = None) -> GuardedServer:
    """A bound (not yet running) waitress server; port 0 picks a free port (see `.effective_port`).

    waitress drops X-Forwarded-* headers itself, unless the app trusts proxies in front of it
    (--trusted-proxies): then the app's ProxyFix reads them, as under the development server,
    and the cap on connections per address is off (they all come from the proxy)."""
    trusts_proxies = bool(app.config.get(TRUSTED_PROXIES_KEY))
    policy = policy or ConnectionPolicy()
    if trusts_proxies:
        policy = replace(policy, per_client=0)
    return guarded_server(app, policy, host=host, port=port, threads=threads, ident="whysim",
                          max_request_body_size=body_limit(app), expose_tracebacks=False,
                          clear_untrusted_proxy_headers=not trusts_proxies)


def serve_production(app: Flask, host: str, port: int, threads: int, announce: Callable[[int], None],
                     policy: ConnectionPolicy | None = None) -> None:
    """Runs until interrupted; `announce` receives the port really listened on."""
    server = production_server(app, host, port, threads, policy)
    announce(int(server.effective_port))
    try:
        server.run()
    finally:
        server.close()
