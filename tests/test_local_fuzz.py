"""Property-based fuzzing of the embedded backend from its own published /swagger.json.

Every generated request must get an answer that is not a server error and that matches the
published schema (status code, content type, headers, body). At least 1,000 requests are
sent (``AMLMM_FUZZ_EXAMPLES`` raises the number of examples per operation for longer runs).
"""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

EXAMPLES = int(os.environ.get("AMLMM_FUZZ_EXAMPLES", "75"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]
SENT: list[str] = []


def operations(base_url: str) -> list:
    loaded = schemathesis.openapi.from_url(base_url + "/swagger.json")
    return [result.ok() for result in loaded.get_all_operations()]


@pytest.fixture(scope="module")
def base_url(local):
    return local.client.base_url


# One test per operation of the published document (the list is fixed: the routes are).
OPERATIONS = ["POST /models", "GET /models", "GET /models/{id}", "POST /manifests",
              "GET /manifests", "GET /manifests/{id}", "POST /images", "GET /images",
              "GET /images/{id}", "POST /services", "GET /services", "GET /services/{id}",
              "PUT /services/{id}", "DELETE /services/{id}", "GET /services/{id}/keys",
              "POST /services/{id}/regenerateKeys", "POST /services/{id}/keys",
              "GET /services/{id}/logs", "GET /services/{id}/collectedData",
              "GET /deployments", "GET /deployments/{id}", "GET /operations/{id}",
              "GET /computeResources", "GET /computeResources/{name}",
              "PUT /computeResources/{name}", "DELETE /computeResources/{name}"]
# Registering a cluster contacts it: generated URLs go nowhere, slowly; fewer of them.
FEWER = {"PUT /computeResources/{name}": 10}


def _short(label: str) -> str:
    method, path = label.split(" ", 1)
    return f"{method} {path.split('/accounts/{accountName}', 1)[-1]}"


def test_the_published_document_has_every_operation(base_url):
    assert sorted(_short(op.label) for op in operations(base_url)) == sorted(OPERATIONS)


@pytest.mark.parametrize("label", OPERATIONS)
def test_no_server_error_and_every_answer_matches_the_schema(label, base_url, local):
    operation = next(op for op in operations(base_url) if _short(op.label) == label)
    token = local.client._transport.tokens.get()

    @given(case=operation.as_strategy())
    @settings(max_examples=FEWER.get(label, EXAMPLES), deadline=None, derandomize=True,
              database=None, suppress_health_check=list(HealthCheck))
    def exchange(case) -> None:
        response = case.call(base_url=base_url,
                             headers={"Authorization": f"Bearer {token}"}, timeout=30)
        SENT.append(label)
        case.validate_response(response, checks=CHECKS)

    exchange()


def test_at_least_a_thousand_requests_were_sent():
    if not SENT:
        pytest.skip("the fuzz test did not run in this session (deselected)")
    operations = len(set(SENT))
    assert operations == len(OPERATIONS), sorted(set(SENT))
    assert len(SENT) >= 1000, f"only {len(SENT)} requests over {operations} operations"
    print(f"fuzz: {len(SENT)} requests over {operations} operations")
