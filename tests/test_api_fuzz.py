"""A property-based run of the agent API's OpenAPI schema (schemathesis) against a real server.

Every operation the schema describes is called with generated inputs, as an admin, on a store
holding real tickets; no call may answer 5xx, and every answer must match the schema (status codes
documented, bodies of the documented shape). The quick run is a fixed budget of examples per
operation; ``--full`` runs many more.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import positive_data_acceptance

from tests.agent_desk import AgentDesk, running_desk

QUICK_EXAMPLES = 15
FULL_EXAMPLES = 150


@pytest.fixture(scope="module")
def fuzz_desk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AgentDesk, str]]:
    from pathlib import Path

    from config.settings import Settings

    data = tmp_path_factory.mktemp("fuzz")
    settings = Settings(_env_file=None, data_dir=data, form_rate_limit_per_minute=100_000,  # type: ignore[call-arg]
                        rules_file=Path(__file__).resolve().parents[1] / "config" / "routing.yaml")
    with running_desk(settings, components=("worker", "sweeper", "web")) as desk:
        token = desk.agent("Fuzz Admin", "fuzz@example.com", role="admin")
        for n in range(3):
            response = httpx.post(desk.base_url + "/intake/form", timeout=30, json={
                "submission_id": uuid.uuid4().hex, "name": f"Customer {n}", "email": f"c{n}@customer.test",
                "subject": f"Question {n}", "message": "Hello, I need help with my order."})
            assert response.status_code == 202, response.text
        desk.wait_routed()
        yield desk, token


def test_no_operation_answers_a_server_error(fuzz_desk: tuple[AgentDesk, str],
                                             request: pytest.FixtureRequest) -> None:
    desk, token = fuzz_desk
    examples = FULL_EXAMPLES if request.config.getoption("--full") else QUICK_EXAMPLES
    # The agent API only: the form and health endpoints have their own tests.
    schema = schemathesis.openapi.from_url(desk.base_url + "/openapi.json").include(path_regex=r"^/api/")
    headers = {"Authorization": f"Bearer {token}"}
    refs = [t["ref"] for t in desk.tickets()]
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy(), pick=st.integers(0, 3))
        @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck),
                  database=None, derandomize=not request.config.getoption("--full"))
        def call(case: Any, pick: int) -> None:
            # Generated references are almost never real tickets: point most calls at one that is,
            # so the writes run on real rows (their change, reply, merge and link paths).
            if pick < len(refs):
                if isinstance(case.path_parameters, dict) and "ref" in case.path_parameters:
                    case.path_parameters["ref"] = refs[pick]
                if isinstance(case.body, dict):
                    for key in ("into", "ticket"):
                        if key in case.body:
                            case.body[key] = refs[(pick + 1) % len(refs)]
            # Schema-valid is not always acceptable: a queue the rules do not define, an assignee
            # who is not an agent, a ticket of a closed case are refused with 4xx on purpose.
            case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])

        try:
            call()
        except Exception as exc:  # collect every operation's failure, then report them together
            failures.append(f"{operation.method.upper()} {operation.path}: {exc}")
    assert operations >= 8, f"only {operations} operations in the schema"
    assert not failures, "\n\n".join(failures)
    # The run worked on real tickets, not only on 404s.
    versions = [httpx.get(f"{desk.base_url}/api/tickets/{ref}", headers=headers, timeout=10).json()["version"]
                for ref in refs]
    assert max(versions) > 1, versions


def test_the_schema_is_complete(fuzz_desk: tuple[AgentDesk, str]) -> None:
    """Every operation documents its success shape and its errors, and no two resources' models
    collide (FastAPI would rename them ``api__x__Model``, which clients then see)."""
    desk, _token = fuzz_desk
    spec = httpx.get(desk.base_url + "/openapi.json", timeout=10).json()
    names = list(spec["components"]["schemas"])
    assert not [n for n in names if "__" in n], names
    for path, operations in spec["paths"].items():
        if not path.startswith("/api/"):
            continue
        for method, operation in operations.items():
            responses = operation["responses"]
            ok = [code for code in responses if code.startswith("2")]
            assert ok, f"{method.upper()} {path} documents no success response"
            assert "401" in responses, f"{method.upper()} {path} does not document 401"
            assert operation.get("summary") or operation.get("description"), f"{method.upper()} {path}"
