"""Fuzzing the API from its own OpenAPI description (schemathesis, in process over WSGI).

For every operation, schemathesis generates requests that fit the description (positive) and
requests that break it (negative): random ids, digests, numbers, multipart bytes that are no
image, missing or extra fields. No answer may be a 5xx, every answer must be one the
description documents, with its content type and schema, and no body may carry a traceback.
The number of examples per operation and mode is small so that the whole module stays well
under a minute; WHYSIM_FUZZ_EXAMPLES raises it for a longer hunt.
"""
from __future__ import annotations

import os
import tempfile
from collections import Counter
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from whysim.webui.app import create_app

EXAMPLES = int(os.environ.get("WHYSIM_FUZZ_EXAMPLES", "25"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def _document() -> dict:
    """The document is generated from the app's routes, so any app (even one with no index) lists them."""
    with tempfile.TemporaryDirectory(prefix="whysim-fuzz-") as empty:
        return create_app({"TESTING": True, "WHYSIM_DATA_DIR": empty}).test_client().get("/api/openapi.json").json


_DOCUMENT = _document()
OPERATIONS = [(path, method, bool(spec.get("parameters") or spec.get("requestBody")))
              for path, methods in _DOCUMENT["paths"].items() for method, spec in methods.items()]
CASES: Counter[tuple[str, int]] = Counter()  # (mode, status) -> requests


@pytest.fixture(scope="module")
def api_schema(app) -> Iterator[schemathesis.BaseSchema]:
    yield schemathesis.openapi.from_wsgi("/api/openapi.json", app)
    total = sum(CASES.values())
    by_status = Counter()
    for (_, status), count in CASES.items():
        by_status[status] += count
    print(f"\nfuzz: {total} requests over {len(OPERATIONS)} operations; by status {dict(sorted(by_status.items()))}")


@pytest.mark.parametrize("mode", list(GenerationMode), ids=lambda mode: mode.value)
@pytest.mark.parametrize("path, method, has_inputs", OPERATIONS, ids=[f"{m.upper()} {p}" for p, m, _ in OPERATIONS])
def test_fuzzed_requests_never_get_a_server_error(api_schema, path: str, method: str, has_inputs: bool,
                                                  mode: GenerationMode) -> None:
    if mode == GenerationMode.NEGATIVE and not has_inputs:
        pytest.skip("an operation without parameters or body has no invalid input")

    @given(case=api_schema[path][method].as_strategy(mode))
    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def fuzz(case: schemathesis.Case) -> None:
        response = case.call()
        CASES[(mode.value, response.status_code)] += 1
        assert b"Traceback" not in response.content
        case.validate_response(response, checks=CHECKS)

    fuzz()
