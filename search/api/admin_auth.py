"""The admin token: endpoints that change the collection answer only to `Authorization: Bearer <token>`.

Without a configured token (`WHYSIM_ADMIN_TOKEN`, `whysim serve --admin-token-file`) the server is
read-only: such endpoints answer 403 to a client that sends a token, and 401 (with
WWW-Authenticate, as for any request without credentials) to one that sends none. The comparison takes the same
time whatever the guess, so the token cannot be found character by character.
"""
from __future__ import annotations

import functools
import hmac
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Response, current_app, request

from whysim.search.api.errors import error_response

ADMIN_TOKEN_KEY = "WHYSIM_ADMIN_TOKEN"
MIN_TOKEN_LENGTH = 16
SECURITY_SCHEME = "adminToken"

F = TypeVar("F", bound=Callable[..., Any])


def check_admin_token(token: str | None) -> None:
    """Refuses a configured token too short to resist guessing."""
    if token is not None and len(token) < MIN_TOKEN_LENGTH:
        raise ValueError(f"the admin token must be at least {MIN_TOKEN_LENGTH} characters long")


def bearer_token() -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def has_admin_token() -> bool:
    """Whether this request carries the configured admin token."""
    configured = current_app.config.get(ADMIN_TOKEN_KEY)
    given = bearer_token()
    return bool(configured) and given is not None and hmac.compare_digest(given.encode(), str(configured).encode())


def admin_token_required(view: F) -> F:
    @functools.wraps(view)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        configured = current_app.config.get(ADMIN_TOKEN_KEY)
        read_only = ("this server is read-only: start it with --admin-token-file (or WHYSIM_ADMIN_TOKEN) "
                     "to allow changes")
        if configured and has_admin_token():
            return view(*args, **kwargs)
        if not configured and bearer_token() is not None:
            return error_response(403, read_only)
        response: Response = error_response(401, read_only if not configured else
                                             "missing or wrong admin token: send 'Authorization: Bearer <token>'")
        response.headers["WWW-Authenticate"] = 'Bearer realm="whysim admin"'
        return response

    return guarded  # type: ignore[return-value]
