"""The checks behind every API parameter, with the messages clients see, and reading request bodies.

The checks are pydantic validators of the request models in search/api/models.py; they raise
InvalidParameter (a ValueError) with a message that names the parameter, and
whysim.search.api.contract turns the first one into a 400 `{"error": message}`.
"""
from __future__ import annotations

import math
from typing import Any

from flask import Request
from werkzeug.exceptions import BadRequest, UnsupportedMediaType

from whysim.search.serving.uploads import parse_query_ref

FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
NOT_A_FILE = ("'image' must be sent as a file (multipart/form-data), not as a text field: "
              "the server never fetches URLs or opens paths it is given")


class InvalidParameter(ValueError):
    """A parameter's value is unusable; the message says which and why."""


def integer(value: Any, name: str, low: int, high: int, typed: bool = False) -> int:
    """`typed`: the value comes from JSON, where numbers must be numbers, not strings; as in JSON
    Schema, a number with no fractional part (12.0) is an integer."""
    if typed and isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, (int, str)) or (typed and isinstance(value, str)):
        raise InvalidParameter(f"{name} must be an integer")
    text = str(value).strip()
    if not (text.isascii() and text.lstrip("-").isdigit()):
        raise InvalidParameter(f"{name} must be an integer, got {text[:40]!r}")
    number = int(text) if len(text) < 30 else high + 1
    if not low <= number <= high:
        raise InvalidParameter(f"{name} must be between {low} and {high}, got {text[:40]}")
    return number


def score(value: Any, name: str, typed: bool = False) -> float | None:
    """A cosine similarity; an empty text field means "none"."""
    if not typed and value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)) or (typed and isinstance(value, str)):
        raise InvalidParameter(f"{name} must be a number")
    try:
        number = float(value)
    except ValueError:
        raise InvalidParameter(f"{name} must be a number, got {str(value)[:40]!r}") from None
    if math.isnan(number) or not -1.0 <= number <= 1.0:
        raise InvalidParameter(f"{name} must be a cosine similarity between -1 and 1")
    return number


def boolean(value: Any, name: str, typed: bool = False) -> bool:
    if isinstance(value, bool):
        return value
    if not typed and isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", ""):
        return value.strip().lower() in ("true", "1")
    raise InvalidParameter(f"{name} must be true or false")


def choice(value: Any, name: str, options: tuple[str, ...]) -> str:
    if value not in options:
        raise InvalidParameter(f"{name} must be one of {', '.join(options)}")
    return str(value)


def query_ref(value: Any, strict: bool = False) -> str | int:
    """An uploaded query's digest (lower case) or an indexed image's id; `strict`: no surrounding spaces."""
    if not isinstance(value, str):
        raise InvalidParameter("query must be a string")
    if strict and value != value.strip():
        raise InvalidParameter("query must be an indexed image id or the SHA-256 digest of an uploaded query, "
                               "without spaces")
    try:
        return parse_query_ref(value)
    except ValueError as exc:
        raise InvalidParameter(str(exc)) from None


def digest(value: Any) -> str:
    ref = query_ref(value)
    if isinstance(ref, int):
        raise InvalidParameter("query must be the SHA-256 digest of an earlier upload; use image_id for an image")
    return ref


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


def body_fields(request: Request, example: str) -> tuple[dict[str, Any], bool]:
    """The fields of a JSON, form or empty body, and whether they are typed (JSON); uploaded
    files are not among them (see `request.files`)."""
    if request.mimetype == "application/json":
        return json_object(request, example), True
    if request.mimetype in FORM_TYPES:
        return dict(request.form.items()), False
    if not request.mimetype and not request.content_length:
        return {}, False
    raise UnsupportedMediaType("send multipart/form-data with an 'image' file, or a form or JSON body "
                               "with 'image_id' or 'query'")
