"""Security headers on every response, and CORS only for the origins the operator allows.

The pages load their own scripts, styles and images from this origin and nothing inline, so
the content policy allows 'self' only. Browsers send no CORS headers of ours unless
`WHYSIM_CORS_ORIGINS` lists the exact origins (scheme://host[:port]) that may call the API.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from flask import Flask, Response, request

CORS_ORIGINS_KEY = "WHYSIM_CORS_ORIGINS"
CORS_METHODS = "GET, POST"
CORS_HEADERS = "Content-Type, Authorization"
CORS_MAX_AGE_S = 600

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data: blob:",
    "connect-src 'self'",
    "font-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
}


def allowed_origins(configured: Any) -> frozenset[str]:
    """The configured allow-list: a list of origins, or one comma-separated string."""
    if not configured:
        return frozenset()
    items: Iterable[Any] = configured.split(",") if isinstance(configured, str) else configured
    origins = frozenset(str(item).strip().rstrip("/") for item in items if str(item).strip())
    if "*" in origins:
        raise ValueError(f"{CORS_ORIGINS_KEY} must list exact origins such as https://example.org, not '*'")
    return origins


def install_security(app: Flask) -> None:
    """Adds the headers to every response (pages, static files, /api JSON and images alike)."""
    origins = allowed_origins(app.config.get(CORS_ORIGINS_KEY))
    # Without CORS, other sites may not even embed our images; with it, the allowed ones may.
    resource_policy = "cross-origin" if origins else "same-origin"

    @app.before_request
    def answer_cors_preflight() -> Response | None:
        if request.method != "OPTIONS" or request.headers.get("Origin") not in origins:
            return None  # no allow-list match: routing answers (405 under /api)
        if not request.headers.get("Access-Control-Request-Method"):
            return None
        response = Response(status=204)
        response.headers["Access-Control-Allow-Methods"] = CORS_METHODS
        response.headers["Access-Control-Allow-Headers"] = CORS_HEADERS
        response.headers["Access-Control-Max-Age"] = str(CORS_MAX_AGE_S)
        return response

    @app.after_request
    def add_security_headers(response: Response) -> Response:
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        response.headers.setdefault("Cross-Origin-Resource-Policy", resource_policy)
        origin = request.headers.get("Origin")
        if origins:
            response.vary.add("Origin")
            if origin in origins:
                response.headers["Access-Control-Allow-Origin"] = origin
                response.headers["Access-Control-Expose-Headers"] = "Server-Timing, ETag"
        return response
