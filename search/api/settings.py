"""Limits and cache sizes of the search API, read from the Flask app's config (WHYSIM_* keys).

Defaults that belong to a serving component are that component's own constants, named here."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from whysim.indexer.runtime.choice import DEFAULT_RUNTIME
from whysim.search.serving.decode_budget import DEFAULT_DECODE_BUDGET_BYTES
from whysim.search.serving.explanations import DEFAULT_EXPLANATION_CACHE_SIZE, DEFAULT_PICTURE_CACHE_SIZE
from whysim.search.serving.model_host import DEFAULT_QUEUE_SIZE
from whysim.search.serving.pictures import DEFAULT_DISPLAY_SIDE
from whysim.search.serving.thumbnails import DEFAULT_THUMBNAIL_SIDE
from whysim.search.serving.uploads import DEFAULT_UPLOAD_CACHE_SIZE

DEFAULT_MAX_UPLOAD_BYTES = 20 * 1024 * 1024
# Covers 50 MP phone cameras; a decoded 64 MP upload takes up to 320 MB (4 bytes a pixel, plus a
# byte for palette images), which fits the decode budget that concurrent uploads share
# (search/serving/decode_budget.py); indexing allows more (whysim.indexer.imaging.DEFAULT_MAX_PIXELS).
DEFAULT_UPLOAD_MAX_PIXELS = 64_000_000
# Per-client limits on loopback: a search a second and an explanation (with its 4 overlays) every
# 0.1 s, for a minute on end, stays under them.
LOOPBACK_UPLOAD_RATE_LIMIT = "600/minute"
LOOPBACK_EXPLAIN_RATE_LIMIT = "600/minute"
LOOPBACK_OVERLAY_RATE_LIMIT = "4800/minute"


@dataclass(frozen=True)
class ApiSettings:
    default_k: int = 10
    max_k: int = 100
    max_offset: int = 10_000
    max_list_limit: int = 500
    upload_max_pixels: int = DEFAULT_UPLOAD_MAX_PIXELS
    decode_budget_bytes: int = DEFAULT_DECODE_BUDGET_BYTES  # decoded pixels of all uploads being decoded at once
    upload_cache_size: int = DEFAULT_UPLOAD_CACHE_SIZE
    explanation_cache_size: int = DEFAULT_EXPLANATION_CACHE_SIZE
    picture_cache_size: int = DEFAULT_PICTURE_CACHE_SIZE
    display_side: int = DEFAULT_DISPLAY_SIDE  # longest side of the images under overlays
    thumbnail_side: int = DEFAULT_THUMBNAIL_SIDE
    index_check_interval_s: float = 0.0  # how often to stat the index file for changes
    device: str = "cpu"
    runtime: str = DEFAULT_RUNTIME  # of query embedding (whysim.indexer.runtime.choice); explanations use PyTorch
    model_queue_size: int = DEFAULT_QUEUE_SIZE  # model calls waiting or running; more are refused with 503
    rate_limits: bool = True  # per-client limits on uploads, explanations and overlays
    upload_rate_limit: str = "20/minute"
    explain_rate_limit: str = "30/minute"
    overlay_rate_limit: str = "240/minute"
    # Where the limits' windows are counted: this process's memory, or a store that several
    # servers share (a Flask-Limiter storage URI: redis://HOST:PORT, memcached://HOST:PORT, ...).
    rate_limit_storage: str = "memory://"

    def for_loopback(self) -> ApiSettings:
        """The rate limits of a server only this machine reaches (`whysim serve`'s default host): one
        person searching and explaining as fast as they like never meets them; the model queue still
        bounds what waits for the model."""
        return replace(self, upload_rate_limit=LOOPBACK_UPLOAD_RATE_LIMIT, explain_rate_limit=LOOPBACK_EXPLAIN_RATE_LIMIT,
                       overlay_rate_limit=LOOPBACK_OVERLAY_RATE_LIMIT)

    @staticmethod
    def config_key(name: str) -> str:
        return f"WHYSIM_{name.upper()}"

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ApiSettings:
        values = {f.name: type(getattr(cls, f.name))(config[cls.config_key(f.name)])
                  for f in fields(cls) if cls.config_key(f.name) in config}
        if "default_k" not in values:
            values["default_k"] = min(cls.default_k, values.get("max_k", cls.max_k))
        settings = cls(**values)
        if not 1 <= settings.default_k <= settings.max_k:
            raise ValueError(f"WHYSIM_DEFAULT_K must be within 1..WHYSIM_MAX_K ({settings.max_k})")
        return settings
