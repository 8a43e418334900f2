"""Schemathesis against the OpenAPI schema the app serves: generated requests to every operation
never get a server error, and responses match the documented status codes and schemas."""
from __future__ import annotations

import pytest

from tests.web.conftest import AUTH, copy_queue, need_web_extra

need_web_extra()
schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import (content_type_conformance, not_a_server_error,  # noqa: E402
                                 response_schema_conformance, status_code_conformance)

from radroute.web.app import create_app  # noqa: E402

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def web_schema(queue_dir, tmp_path_factory):
    app = create_app(copy_queue(queue_dir, tmp_path_factory.mktemp("openapi") / "q").cfg)
    yield schemathesis.openapi.from_asgi("/openapi.json", app, headers=AUTH)
    app.state.thumbnails.close()
    app.state.journal.close()


def test_api_conforms_and_never_fails(web_schema):
    """Each operation with its own hypothesis run (``schemathesis.pytest.from_fixture`` does not
    work with pytest 9, so the strategies are driven here)."""
    operations = [result.ok() for result in web_schema.get_all_operations()]
    assert {f"{op.method.upper()} {op.path}" for op in operations} == {
        "GET /healthz", "GET /api/status", "GET /api/review", "GET /api/review/{instance_id}",
        "GET /api/review/{instance_id}/thumbnail.png", "POST /api/review/{instance_id}", "GET /api/labels.csv"}
    ids = [item["id"] for item in _queue_ids(web_schema)]
    for operation in operations:
        variants = [(GenerationMode.POSITIVE, None), (GenerationMode.NEGATIVE, None)]
        if "{instance_id}" in operation.path:  # random ids are mostly unknown: also real ones
            variants.append((GenerationMode.POSITIVE, {"instance_id": ids[0]}))
        for mode, path_parameters in variants:
            if mode is GenerationMode.NEGATIVE and not _has_inputs(operation):
                continue

            @given(case=operation.as_strategy(mode, path_parameters=path_parameters))
            @settings(max_examples=12, deadline=None, database=None, suppress_health_check=list(HealthCheck))
            def call(case):
                case.call_and_validate(headers=AUTH, checks=CHECKS)

            call()


def _queue_ids(web_schema) -> list[dict]:
    from starlette.testclient import TestClient

    return TestClient(web_schema.app, headers=AUTH).get("/api/review").json()  # no lifespan: stays open


def _has_inputs(operation) -> bool:
    return bool(operation.path_parameters or operation.query or operation.body)
