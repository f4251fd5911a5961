"""Uploaded queries kept in memory under their digest, so a client can page through results and
ask for explanations after a search without uploading the image again."""
from __future__ import annotations

import re

from whysim.search.serving.cache import LRUCache
from whysim.search.serving.engine import UploadedQuery

DIGEST_PATTERN = re.compile(r"^[0-9a-fA-F]{64}$")
DEFAULT_UPLOAD_CACHE_SIZE = 64  # ~1 MB each (model pixels + a display copy)


class QueryExpired(LookupError):
    """The digest names no upload this server still holds."""


def parse_query_ref(text: str) -> str | int:
    """'<64 hex digits>' is an uploaded query's digest, a positive integer an indexed image's id."""
    text = text.strip()
    if DIGEST_PATTERN.match(text):
        return text.lower()
    if text.isascii() and text.isdigit() and int(text) > 0:
        return int(text)
    raise ValueError("query must be an indexed image id or the SHA-256 digest of an uploaded query")


class UploadCache:
    def __init__(self, capacity: int = DEFAULT_UPLOAD_CACHE_SIZE) -> None:
        self._items: LRUCache[UploadedQuery] = LRUCache(capacity)

    def add(self, uploaded: UploadedQuery) -> None:
        self._items.put(uploaded.digest, uploaded)

    def peek(self, digest: str) -> UploadedQuery | None:
        return self._items.get(digest.lower())

    def get(self, digest: str, model_key: str) -> UploadedQuery:
        """The upload with this digest, embedded by the model now served; QueryExpired otherwise."""
        found = self._items.get(digest.lower())
        if found is None or found.model_key != model_key:
            raise QueryExpired(f"query {digest[:12]}… is no longer held by the server; upload the query again")
        return found

    def __len__(self) -> int:
        return len(self._items)
