"""The service answers as its OpenAPI schema says: schemathesis against a live server.

Every operation of ``/openapi.json`` gets generated requests (valid and invalid, from the schema's
examples, its coverage cases and fuzzing; seeded, so a run repeats) with the submit token, on a
real uvicorn server (conftest.py). Each answer must be no 5xx, have a status code, content type,
headers and body the schema documents for that operation. Generated run ids are random, so the run
routes answer 404 or 422; requests have a timeout so an event stream can never hang the test.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import hypothesis
import pytest
import schemathesis
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from .conftest import SUBMIT, Live, auth

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance]
EXAMPLES = 50
TIMEOUT = 10.0  # seconds per request: an event stream that did not end would fail, not hang


@pytest.fixture
def schema_server(serve: Callable[..., Live]) -> Live:
    """A service whose rate limit generated traffic cannot reach (429 would hide the real answers)."""
    return serve(rate=100_000.0)


def _load(server: Live, **extra: Any) -> schemathesis.BaseSchema:
    """The live server's own /openapi.json, seeded and bounded."""
    config = schemathesis.Config.from_dict({
        "seed": 20240601,
        "headers": auth(SUBMIT),
        "request-timeout": TIMEOUT,
        "generation": {"max-examples": EXAMPLES, "deterministic": True},
        **extra,
    })
    return schemathesis.openapi.from_url(f"{server.url}/openapi.json", config=config, timeout=TIMEOUT)


@pytest.fixture
def api_schema(schema_server: Live) -> schemathesis.BaseSchema:
    return _load(schema_server)


@pytest.fixture
def run_schema(schema_server: Live) -> schemathesis.BaseSchema:
    """The schema with every run id pinned to a run that has ended: the run routes answer for real."""
    with schema_server.client() as client:
        run_id = schema_server.submit(client, "tiny")
        schema_server.wait(client, run_id)
    return _load(schema_server, parameters={"run_id": run_id})


schema = schemathesis.pytest.from_fixture("api_schema")
run_routes = schemathesis.pytest.from_fixture("run_schema").include(path_regex=r"\{run_id\}")


SETTINGS = hypothesis.settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                               suppress_health_check=list(hypothesis.HealthCheck))


@SETTINGS
@schema.parametrize()
def test_every_operation_answers_as_documented(case: schemathesis.Case) -> None:
    """Each operation's answers to generated requests are documented (status, type, headers, body), never 5xx."""
    case.call_and_validate(headers=auth(SUBMIT), checks=CHECKS, timeout=TIMEOUT)


@SETTINGS
@run_routes.parametrize()
def test_the_routes_of_a_real_run_answer_as_documented(case: schemathesis.Case) -> None:
    """The same for the routes of a run that exists (RunDetail, report, event stream, 409 on cancel)."""
    case.call_and_validate(headers=auth(SUBMIT), checks=CHECKS, timeout=TIMEOUT)


def test_the_schema_covers_the_api(api_schema: schemathesis.BaseSchema) -> None:
    """The schema lists the /v1 operations, health and metrics (so the run above tests them)."""
    labels = {result.ok().label for result in api_schema.get_all_operations()}
    assert labels >= {"GET /healthz", "GET /readyz", "GET /metrics", "GET /v1/workflows", "POST /v1/runs",
                      "GET /v1/runs", "GET /v1/runs/{run_id}", "POST /v1/runs/{run_id}/cancel",
                      "GET /v1/runs/{run_id}/events", "GET /v1/runs/{run_id}/report"}
