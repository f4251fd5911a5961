"""Reading and checking API parameters; every problem becomes a 400 (or 415) with a clear message."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from flask import Request
from werkzeug.exceptions import BadRequest, UnsupportedMediaType

from search.engine import MAX_IMAGE_ID
from search.settings import ApiSettings
from search.uploads import parse_query_ref

FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
NOT_A_FILE = ("'image' must be sent as a file (multipart/form-data), not as a text field: "
              "the server never fetches URLs or opens paths it is given")


def integer(value: Any, name: str, low: int, high: int, typed: bool = False) -> int:
    """`typed`: the value comes from JSON, where numbers must be numbers, not strings."""
    if isinstance(value, bool) or not isinstance(value, (int, str)) or (typed and isinstance(value, str)):
        raise BadRequest(f"{name} must be an integer")
    text = str(value).strip()
    if not (text.isascii() and text.lstrip("-").isdigit()):
        raise BadRequest(f"{name} must be an integer, got {text[:40]!r}")
    number = int(text) if len(text) < 30 else high + 1
    if not low <= number <= high:
        raise BadRequest(f"{name} must be between {low} and {high}, got {text[:40]}")
    return number


def score(value: Any, name: str, typed: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)) or (typed and isinstance(value, str)):
        raise BadRequest(f"{name} must be a number")
    try:
        number = float(value)
    except ValueError:
        raise BadRequest(f"{name} must be a number, got {str(value)[:40]!r}") from None
    if math.isnan(number) or not -1.0 <= number <= 1.0:
        raise BadRequest(f"{name} must be a cosine similarity between -1 and 1")
    return number


def boolean(value: Any, name: str, typed: bool = False) -> bool:
    if isinstance(value, bool):
        return value
    if not typed and isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
        return value.strip().lower() in ("true", "1")
    raise BadRequest(f"{name} must be true or false")


def image_id(value: Any, name: str = "image_id", typed: bool = False) -> int:
    return integer(value, name, 1, MAX_IMAGE_ID, typed)


def query_ref(value: Any) -> str | int:
    if not isinstance(value, str):
        raise BadRequest("query must be a string")
    try:
        return parse_query_ref(value)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


def required(args: Any, name: str) -> Any:
    value = args.get(name)
    if value is None or value == "":
        raise BadRequest(f"missing parameter '{name}'")
    return value


def choice(args: Any, name: str, options: tuple[str, ...], default: str | None = None) -> str:
    value = args.get(name, default)
    if value is None:
        raise BadRequest(f"missing parameter '{name}' (one of {', '.join(options)})")
    if value not in options:
        raise BadRequest(f"{name} must be one of {', '.join(options)}")
    return str(value)


@dataclass(frozen=True)
class SearchParams:
    upload: bytes | None
    image_id: int | None
    digest: str | None
    k: int
    offset: int
    min_score: float | None


def json_object(request: Request, example: str) -> dict[str, Any]:
    """The request's JSON body, which must be an object; anything else (malformed, or nested too
    deep for the parser) is a 400 that shows `example`."""
    try:
        body = request.get_json(silent=True)
    except RecursionError:
        body = None
    if not isinstance(body, dict):
        raise BadRequest(f"the JSON body must be an object, e.g. {example}")
    return body


def _fields(request: Request) -> tuple[dict[str, Any], bytes | None, bool]:
    """The body's fields, the uploaded file's bytes (if any), and whether the fields are typed (JSON)."""
    if request.mimetype == "application/json":
        body = json_object(request, '{"image_id": 12, "k": 10}')
        if "image" in body:
            raise BadRequest(NOT_A_FILE)
        return body, None, True
    if request.mimetype in FORM_TYPES:
        if "image" in request.form:
            raise BadRequest(NOT_A_FILE)
        upload = request.files.get("image")
        return dict(request.form.items()), (upload.read() if upload is not None else None), False
    if not request.mimetype and not request.content_length:
        return {}, None, False
    raise UnsupportedMediaType("send multipart/form-data with an 'image' file, or a form or JSON body "
                               "with 'image_id' or 'query'")


def search_params(request: Request, settings: ApiSettings) -> SearchParams:
    fields, upload, typed = _fields(request)
    given = [name for name, present in (("image", upload is not None), ("image_id", "image_id" in fields),
                                        ("query", "query" in fields)) if present]
    if len(given) != 1:
        problem = "nothing to search for" if not given else f"give only one of {', '.join(given)}"
        raise BadRequest(f"{problem}: upload an 'image' file, or give an indexed 'image_id', "
                         "or the 'query' digest of an earlier upload")
    digest = None
    if "query" in fields:
        ref = query_ref(fields["query"])
        if isinstance(ref, int):
            raise BadRequest("query must be the SHA-256 digest of an earlier upload; use image_id for an image")
        digest = ref
    options = _PagingOptions(fields, typed, request.args)
    return SearchParams(
        upload=upload,
        image_id=image_id(fields["image_id"], typed=typed) if "image_id" in fields else None,
        digest=digest,
        k=options.integer("k", settings.default_k, 1, settings.max_k),
        offset=options.integer("offset", 0, 0, settings.max_offset),
        min_score=options.score("min_score"),
    )


@dataclass(frozen=True)
class _PagingOptions:
    """k, offset and min_score: from the body, else from the query string (`POST /api/search?k=5`)."""

    body: dict[str, Any]
    typed: bool  # the body is JSON, whose numbers must be numbers; query-string values are text
    args: Any

    def _lookup(self, name: str) -> tuple[Any, bool] | None:
        if name in self.body:
            return self.body[name], self.typed
        if name in self.args:
            return self.args[name], False
        return None

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        found = self._lookup(name)
        return default if found is None else integer(found[0], name, low, high, found[1])

    def score(self, name: str) -> float | None:
        found = self._lookup(name)
        if found is None or (not found[1] and found[0] == ""):  # an empty form field means "no minimum"
            return None
        return score(found[0], name, found[1])
