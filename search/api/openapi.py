"""The OpenAPI 3.1 document of /api, assembled from the routes' declarations (whysim.search.api.contract)
and the JSON Schemas pydantic generates from the models in search/api/models.py.

Nothing here describes a route or a field by hand: a route appears because it is mounted and
declared, a field because its model has it.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from whysim.search.api.admin_auth import SECURITY_SCHEME
from whysim.search.api.contract import ERROR_TEXT, Binary, Operation, operation_of, resolve
from whysim.search.api.models import Error, RequestModels

REF_TEMPLATE = "#/components/schemas/{model}"
API_PREFIX = "/api/"


def _schema(model: type[BaseModel], components: dict[str, Any]) -> dict[str, Any]:
    """The model's schema inline, its nested models moved to the components."""
    schema = model.model_json_schema(ref_template=REF_TEMPLATE)
    components.update(schema.pop("$defs", {}))
    for prop in schema.get("properties", {}).values():
        if "default" in prop and prop["default"] is None:
            del prop["default"]  # absent is not null: a client may leave it out, not send null
    return schema


def _parameters(model: type[BaseModel], where: str, components: dict[str, Any],
                examples: Mapping[str, Any]) -> list[dict[str, Any]]:
    schema = _schema(model, components)
    required = set(schema.get("required", []))
    found = []
    for name, prop in schema["properties"].items():
        prop = {key: value for key, value in prop.items() if key not in ("title", "description")}
        parameter = {"name": name, "in": where, "required": where == "path" or name in required,
                     "schema": prop, "description": schema["properties"][name].get("description", "")}
        if name in examples:
            parameter["example"] = examples[name]
        found.append(parameter)
    return found


def _answer(description: str, answer: Any) -> dict[str, Any]:
    if answer is None:
        return {"description": description}
    if isinstance(answer, Binary):
        return {"description": description,
                "content": {answer.media_type: {"schema": {"type": "string", "format": "binary"}}}}
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": REF_TEMPLATE.format(model=answer.__name__)}}}}


def _operation(operation: Operation, models: RequestModels, components: dict[str, Any],
               examples: Mapping[str, Any]) -> dict[str, Any]:
    responses = {str(status): _answer(description, answer)
                 for status, (description, answer) in operation.responses.items()}
    responses.update({str(code): _answer(ERROR_TEXT[code], Error) for code in operation.errors})
    responses["default"] = _answer("Any other error (JSON, with a message).", Error)
    found: dict[str, Any] = {"summary": operation.summary, "operationId": operation.operation_id,
                             "responses": responses}
    parameters = []
    if operation.path is not None:
        parameters += _parameters(operation.path, "path", components, examples)
    if operation.query is not None:
        parameters += _parameters(resolve(operation.query, models), "query", components, examples)
    if parameters:
        found["parameters"] = parameters
    if operation.body:
        content = {}
        for media_type, source in operation.body.items():
            content[media_type] = {"schema": _schema(resolve(source, models), components)}
            if media_type == "multipart/form-data":
                content[media_type]["encoding"] = {"image": {"contentType": "image/*"}}
        found["requestBody"] = {"required": operation.body_required, "content": content}
    if operation.secured:
        found["security"] = [{SECURITY_SCHEME: []}]
    return found


def openapi_path(rule: str) -> str:
    """/api/images/<int:image_id> -> /api/images/{image_id}"""
    parts = []
    for piece in rule.split("/"):
        if piece.startswith("<") and piece.endswith(">"):
            piece = "{" + piece[1:-1].split(":")[-1] + "}"
        parts.append(piece)
    return "/".join(parts)


def openapi_document(app: Flask, models: RequestModels, examples: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """`examples`: parameter values that reach real data (e.g. an indexed query and hit)."""
    declared = [(rule, operation) for rule in app.url_map.iter_rules() if rule.rule.startswith(API_PREFIX)
                for operation in [operation_of(app.view_functions[rule.endpoint])] if operation is not None]
    answers = {Error, *(answer for _, operation in declared for _, answer in operation.responses.values()
                        if isinstance(answer, type))}
    _, definitions = models_json_schema([(model, "serialization") for model in sorted(answers, key=str)],
                                        ref_template=REF_TEMPLATE)
    components: dict[str, Any] = dict(definitions.get("$defs", {}))
    paths: dict[str, dict[str, Any]] = {}
    for rule, operation in declared:
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            paths.setdefault(openapi_path(rule.rule), {})[method.lower()] = \
                _operation(operation, models, components, examples or {})
    return {
        "openapi": "3.1.0",
        "info": {"title": "whysim search API", "version": "1.1.0",
                 "description": "Image similarity search with paired Grad-CAM explanations. Every response "
                                "under /api/ that is not an image is JSON; errors are {\"error\": message}. "
                                "Expensive routes are rate-limited per client (429 with Retry-After)."},
        "paths": paths,
        "components": {"schemas": components,
                       "securitySchemes": {SECURITY_SCHEME: {
                           "type": "http", "scheme": "bearer",
                           "description": "The server's admin token (whysim serve --admin-token-file, or WHYSIM_ADMIN_TOKEN); without "
                                          "one configured, the server is read-only."}}},
    }
