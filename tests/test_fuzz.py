"""Schemathesis against the running portal: every operation of the schema, with generated
requests, answers without a server error and as its schema says. `make fuzz` runs it longer."""

from __future__ import annotations

import copy
import os

import pytest
import schemathesis
from django.core.management import call_command
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from ports.deployments import save_deployment

from .conftest import FULL_DEPLOYMENT, api_key, make_member

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "15"))  # per operation; `make fuzz` asks for more


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_every_operation_answers_without_a_server_error_and_as_documented(live_server):
    call_command("load_catalog", verbosity=0)
    user = make_member("fuzzer", "Mail team")
    save_deployment({**copy.deepcopy(FULL_DEPLOYMENT), "team": "Mail team"})
    headers = {"Authorization": f"Token {api_key(user)}"}
    schema = schemathesis.openapi.from_url(f"{live_server.url}/api/schema/?format=json", headers=headers)
    failures, operations, cases = {}, 0, 0

    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
                  database=None)  # fmt: skip
        def check(case: schemathesis.Case) -> None:
            nonlocal cases
            cases += 1
            case.call_and_validate(headers=headers, checks=[not_a_server_error, response_schema_conformance])

        try:
            check()
        except Exception as failure:
            failures[operation.label] = str(failure)[:2000]
    print(f"schemathesis: {operations} operations, {cases} cases, {len(failures)} failing")
    assert operations >= 30
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())
