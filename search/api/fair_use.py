"""Per-client rate limits on the routes that cost model time: search by upload, explanations
and their overlays (Flask-Limiter). Everything else (search by id, thumbnails, files, stats)
stays unlimited: it costs milliseconds.

The windows are counted in this process's memory by default, so each server behind a load
balancer allows a client the full rate; `whysim serve --rate-limit-storage redis://HOST:PORT`
(or any storage URI Flask-Limiter reads: memcached://, valkey://, mongodb://, ...) counts them
in one store that the servers share. Windows move with each request (the moving-window
strategy) where the store can do that; Memcached cannot, and there a window is approximated
from the current and the previous fixed one (the sliding-window-counter strategy).

A client is its remote address; behind a reverse proxy, `whysim serve --trusted-proxies N`
takes it from the X-Forwarded-For header that the N proxies in front of the server set.
Clients that send the admin token are exempt. A refused request gets 429, a JSON error and
`Retry-After` (seconds until the oldest request in the window expires).

The defaults are far above what a person at the web page asks for: one search, then one
explanation (one /api/explain and four overlay images) every few seconds.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from flask import Flask, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from limits import parse_many
from limits.storage import SCHEMES, MovingWindowSupport

from whysim.search.api.admin_auth import has_admin_token
from whysim.search.api.settings import ApiSettings

EXTENSION_KEY = "whysim.limiter"


@dataclass(frozen=True)
class RateLimits:
    upload: str  # POST /api/search with an uploaded image
    explain: str  # GET /api/explain
    overlay: str  # GET /api/explain/overlay
    enabled: bool = True
    storage: str = ApiSettings.rate_limit_storage

    @classmethod
    def of(cls, settings: ApiSettings) -> RateLimits:
        return cls(settings.upload_rate_limit, settings.explain_rate_limit, settings.overlay_rate_limit,
                   settings.rate_limits, settings.rate_limit_storage)

    @property
    def strategy(self) -> str:
        """Flask-Limiter's strategy: the exact moving window where the storage keeps one."""
        storage = SCHEMES[self.storage.split("://", 1)[0]]
        return "moving-window" if issubclass(storage, MovingWindowSupport) else "sliding-window-counter"

    def check(self) -> None:
        """Refuses a limit string that Flask-Limiter cannot read (e.g. "20 a minute"), and a
        storage it does not know (its client library, e.g. redis, is checked on first use)."""
        scheme = self.storage.split("://", 1)[0] if "://" in self.storage else ""
        if scheme not in SCHEMES or scheme.startswith("async+"):
            known = ", ".join(sorted(f"{name}://" for name in SCHEMES if not name.startswith("async+")))
            raise ValueError(f"rate limit storage {self.storage!r} is not a storage URI; use one of {known}")
        for name in ("upload", "explain", "overlay"):
            value = getattr(self, name)
            try:
                parse_many(value)
            except ValueError:
                raise ValueError(f"{name} rate limit {value!r} is not a limit such as '20/minute' "
                                 "or '5/second;100/hour'") from None


def _is_upload() -> bool:
    return request.mimetype == "multipart/form-data"


def _message(what: str) -> Callable[[], str]:
    return lambda: (f"too many {what} from this client ({request.remote_addr}); wait for the number of "
                    "seconds in Retry-After and try again")


def install_rate_limits(app: Flask, limits: RateLimits, endpoints: dict[str, str]) -> Limiter:
    """`endpoints`: the endpoints of the upload search, explain and overlay routes, by limit name.

    Flask-Limiter checks a route's own limit in a wrapper around its view, so this app's views
    are replaced by wrapped ones (the module's functions stay as they are for other apps)."""
    limits.check()
    limiter = Limiter(get_remote_address, app=app, storage_uri=limits.storage, strategy=limits.strategy,
                      headers_enabled=True, enabled=limits.enabled)
    limiter.request_filter(has_admin_token)
    rules = {"upload": limiter.limit(limits.upload, exempt_when=lambda: not _is_upload(),
                                     error_message=_message("uploads")),
             "explain": limiter.limit(limits.explain, error_message=_message("explanations")),
             "overlay": limiter.limit(limits.overlay, error_message=_message("overlay images"))}
    for name, rule in rules.items():
        endpoint = endpoints[name]
        app.view_functions[endpoint] = rule(app.view_functions[endpoint])
    app.extensions[EXTENSION_KEY] = limiter  # the wrappers hold it only weakly
    return limiter
