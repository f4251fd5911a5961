"""One line per request on the `whysim.access` logger, in logfmt (key=value, quoted when needed),
which log shippers (Loki, Vector, Fluent Bit, Datadog) parse without a custom pattern:

    method=GET route=/api/explain path=/api/explain status=200 duration_ms=291.4 client=10.0.0.7 bytes=5120

The same hook feeds the request counter and latency histogram of search/api/metrics.py."""
from __future__ import annotations

import logging
import re

from flask import Flask, Response, request

from whysim.search.api.metrics import metrics_of, request_seconds, request_started, route_of_request

LOGGER_NAME = "whysim.access"
logger = logging.getLogger(LOGGER_NAME)
BARE_VALUE = re.compile(r"^[^\s\"=\\\x00-\x1f\x7f-\x9f]+$")
# Every control character (C0, DEL, C1) is written as an escape: a request path can carry CR,
# ESC or NUL, which would otherwise forge log lines or drive the terminal that shows the log.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_control(match: re.Match[str]) -> str:
    char = match.group()
    return NAMED_ESCAPES.get(char, f"\\x{ord(char):02x}")


def logfmt_value(value: object) -> str:
    text = str(value)
    if BARE_VALUE.match(text):
        return text
    return '"' + CONTROL.sub(_escape_control, text.replace("\\", "\\\\").replace('"', '\\"')) + '"'


def logfmt(**fields: object) -> str:
    return " ".join(f"{key}={logfmt_value(value)}" for key, value in fields.items())


def install_request_log(app: Flask) -> None:
    """Install first, so that its before_request hook runs first and its after_request hook last
    (Flask runs those in reverse order): the duration then covers every other hook."""
    metrics = metrics_of(app)

    @app.after_request
    def record(response: Response) -> Response:
        seconds = request_seconds()
        route = route_of_request()
        labels = (route, request.method, str(response.status_code))
        metrics.requests.labels(*labels).inc()
        metrics.latency.labels(*labels).observe(seconds)
        if logger.isEnabledFor(logging.INFO):
            logger.info(logfmt(method=request.method, route=route, path=request.path, status=response.status_code,
                               duration_ms=f"{seconds * 1000:.1f}", client=request.remote_addr or "-",
                               bytes=response.content_length if response.content_length is not None else "-"))
        return response

    app.before_request(request_started)
