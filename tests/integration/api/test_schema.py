"""Schemathesis runs the OpenAPI document against the live app: no 500, responses match it.

Every operation of ``/openapi.json`` gets generated requests (valid and
invalid) and every response is checked by schemathesis' default checks: no
server error, status code, content type, headers and body as documented.
Bounded here (``STRATEGYQ_FUZZ_EXAMPLES``, 15 per operation by default);
``make fuzz`` runs the same test with many more.
"""

from __future__ import annotations

import os
from typing import Any

import redis
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.config import SchemathesisConfig

from tests.integration.api.conftest import ServeProcess

EXAMPLES = int(os.environ.get("STRATEGYQ_FUZZ_EXAMPLES", "15"))
# The schema gives the shapes of a task; what only the task's rules can say (an end
# date before the start, a backtest's args under task_type "screening") is a 422
# problem for a schema-valid body, so 422 counts as accepting valid data too.
CONFIG = SchemathesisConfig.from_dict(
    {"checks": {"positive_data_acceptance": {"expected-statuses": [
        "2xx", "3xx", "401", "403", "404", "409", "422", "429"]}}}
)  # fmt: skip


def test_the_live_api_matches_its_openapi_document(
    serve: ServeProcess, redis_client: redis.Redis
) -> None:
    schema = schemathesis.openapi.from_url(serve.url + "/openapi.json", config=CONFIG)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 12
    checked: list[str] = []
    calls: list[str] = []
    for operation in operations:
        # Long-polls of generated ids answer at once (404), so no case blocks.
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def run(case: Any) -> None:
            calls.append(case.method)
            case.call_and_validate(base_url=serve.url, timeout=60)

        run()
        checked.append(f"{operation.method.upper()} {operation.path}")
    assert len(calls) >= 3 * len(operations), f"only {len(calls)} requests were generated"
    print(f"\nschemathesis: {len(calls)} requests over {len(operations)} operations")
    assert "POST /v1/tasks" in checked and "GET /v1/tasks/{task_id}/events" in checked
    assert {"POST /v1/schedules", "GET /v1/schedules/{name}", "DELETE /v1/schedules/{name}",
            "POST /v1/schedules/{name}/run-now"} <= set(checked)  # fmt: skip
