"""What each API route takes and answers, declared next to its view and read by search/api/openapi.py.

`@documented(Operation(...))` names the request models (query string, path, body per media
type) and the answers (a response model, an image type, or no body) of a view; `validated()`
checks input against a request model and turns the first problem into a 400 with the check's
own message, in the API's usual `{"error": message}` shape.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar, Union

from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import BadRequest

from whysim.search.api.models import RequestModels
from whysim.search.api.params import InvalidParameter

M = TypeVar("M", bound=BaseModel)
F = TypeVar("F", bound=Callable[..., Any])
# A request model, or how to pick the app's own (limits from its settings) from RequestModels.
ModelSource = Union[type[BaseModel], Callable[[RequestModels], type[BaseModel]]]
OPERATION_ATTRIBUTE = "api_operation"

ERROR_TEXT = {
    400: "Bad request: a malformed parameter, or an upload that is not a decodable image.",
    401: "Missing or wrong admin token (send `Authorization: Bearer <token>`); on a read-only server, no token sent.",
    403: "The server is read-only (no admin token is configured) and a token was sent.",
    404: "Unknown image id, image without a vector or file, or an uploaded query no longer held.",
    409: "A re-index is already running (this server's, or another `whysim index` on the data directory).",
    413: "Upload larger than the byte limit, or an image with more pixels than allowed or than the decode budget holds.",
    415: "Unsupported request body type.",
    429: "This client sent too many of these requests; wait for `Retry-After` seconds.",
    503: "No searchable index yet (or a rebuild in progress), the model cannot be loaded, or the model's "
         "queue or the uploads' decode budget is full (then with `Retry-After`).",
}


@dataclass(frozen=True)
class Binary:
    """A response body that is a file, not JSON."""

    media_type: str


Answer = Union[type[BaseModel], Binary, None]  # None: no body (304)


@dataclass(frozen=True)
class Operation:
    operation_id: str
    summary: str
    responses: Mapping[int, tuple[str, Answer]]
    errors: tuple[int, ...] = ()
    query: ModelSource | None = None
    path: type[BaseModel] | None = None
    body: Mapping[str, ModelSource] = field(default_factory=dict)
    body_required: bool = False
    secured: bool = False  # needs the admin token


def documented(operation: Operation) -> Callable[[F], F]:
    def attach(view: F) -> F:
        setattr(view, OPERATION_ATTRIBUTE, operation)
        return view

    return attach


def operation_of(view: Callable[..., Any]) -> Operation | None:
    return getattr(view, OPERATION_ATTRIBUTE, None)


def resolve(source: ModelSource, models: RequestModels) -> type[BaseModel]:
    if isinstance(source, type):
        return source
    return source(models)


def problem(error: ValidationError) -> str:
    """The first problem, as the check that found it words it."""
    first = error.errors(include_url=False)[0]
    name = ".".join(str(part) for part in first["loc"])
    cause = (first.get("ctx") or {}).get("error")
    if isinstance(cause, InvalidParameter):
        return str(cause)
    if first["type"] == "missing":
        return f"missing parameter '{name}'"
    if first["type"] == "extra_forbidden":
        return f"unknown field '{name}'"
    return f"{name}: {first['msg']}" if name else str(first["msg"])


def validated(model: type[M], data: Mapping[str, Any]) -> M:
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        raise BadRequest(problem(exc)) from None
