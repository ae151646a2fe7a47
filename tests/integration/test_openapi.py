"""schemathesis against a served Ferry: what the API answers matches what it documents.

A real `ferry serve` on this module's PostgreSQL, with the demo's users: schemathesis loads
/api/openapi.json from it and, for every operation, sends generated requests (valid and
invalid) with a normal user's key, and, for the admin operations, with the admin's key. A 5xx,
a status the document does not list, or a body or content type that does not match the
document fails the test. Revocations and cancellations hit the module's own database only.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import settings
from schemathesis.generation.case import Case

from portability.openapi import DOCUMENT
from tests.support.ferry import Ferry, http

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
)
EXAMPLES = 40


@pytest.fixture(scope="module")
def served(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ferry]:
    ferry = Ferry.create(tmp_path_factory.mktemp("openapi"), database_url)
    ferry.run("demo", "--keys-file", str(ferry.workdir / "keys.txt"))
    ferry.serve()
    # A request of alice's, for the workflows to show and cancel through the document's links.
    status, created = http(
        "POST",
        ferry.api_url + "/api/portability/export",
        body={"format": "json"},
        token=ferry.demo_key("alice@example.com"),
    )
    assert status == 202, created
    try:
        yield ferry
    finally:
        ferry.stop()


# Generated from the module's document; the first test shows the served one is the same.
# (schemathesis's lazy `from_fixture` loader does not run on pytest 9, so no URL loading.)
SCHEMA = schemathesis.openapi.from_dict(
    DOCUMENT,
    config=schemathesis.Config.from_dict(
        {
            "generation": {"max-examples": EXAMPLES},
            "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
        }
    ),
)
user_schema = SCHEMA.exclude(path_regex="^/api/admin/")
admin_schema = SCHEMA.include(path_regex="^/api/admin/")


def call(case: Case[Any], ferry: Ferry, email: str) -> None:
    headers = {"Authorization": f"Bearer {ferry.demo_key(email)}"}
    case.call_and_validate(base_url=ferry.api_url, headers=headers)


def test_the_served_document_is_the_module(served: Ferry) -> None:
    with urllib.request.urlopen(served.api_url + "/api/openapi.json") as answer:  # noqa: S310
        assert answer.headers["content-type"] == "application/json"
        assert json.loads(answer.read()) == DOCUMENT


@user_schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None)
def test_user_operations_answer_as_documented(case: Case[Any], served: Ferry) -> None:
    call(case, served, "alice@example.com")


@admin_schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None)
def test_admin_operations_answer_as_documented(case: Case[Any], served: Ferry) -> None:
    call(case, served, "admin@example.com")


def test_a_user_key_is_refused_on_admin_operations(served: Ferry) -> None:
    status, body = http(
        "GET",
        served.api_url + "/api/admin/requests/overdue",
        token=served.demo_key("bob@example.com"),
    )
    assert status == 403 and body["error"]["code"] == "forbidden"


def workflow(schema: Any, ferry: Ferry, email: str) -> None:
    """Follow the document's links: issue then revoke, create then show and cancel, ..."""
    headers = {"Authorization": f"Bearer {ferry.demo_key(email)}"}

    class Workflow(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: Case[Any]) -> dict[str, Any]:
            return {"base_url": ferry.api_url, "headers": headers}

    Workflow.run(settings=settings(max_examples=EXAMPLES, deadline=None, stateful_step_count=6))


def test_user_workflows_answer_as_documented(served: Ferry) -> None:
    workflow(user_schema, served, "alice@example.com")


def test_admin_workflows_answer_as_documented(served: Ferry) -> None:
    workflow(admin_schema, served, "admin@example.com")


def post_raw(ferry: Ferry, path: str, raw: bytes, email: str) -> tuple[int, Any]:
    request = urllib.request.Request(ferry.api_url + path, data=raw, method="POST")  # noqa: S310
    request.add_header("authorization", f"Bearer {ferry.demo_key(email)}")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_what_schemathesis_found_is_refused_not_a_server_error(served: Ferry) -> None:
    # A NUL in the body: PostgreSQL text cannot hold it (was a 500 from the database).
    status, body = post_raw(
        served,
        "/api/portability/credentials",
        b'{"bucket": "alice-data\\u0000"}',
        "alice@example.com",
    )
    assert (status, body["error"]["code"]) == (422, "invalid")
    # A NUL in a path parameter or in ?user=: names nothing.
    status, body = http(
        "DELETE",
        served.api_url + "/api/portability/credentials/FRY%00",
        token=served.demo_key("alice@example.com"),
    )
    assert (status, body["error"]["code"]) == (404, "not_found")
    status, body = http(
        "GET",
        served.api_url + "/api/admin/credentials?user=a%00b",
        token=served.demo_key("admin@example.com"),
    )
    assert (status, body["error"]["code"]) == (404, "not_found")
    # JSON nested deeper than Python recurses (was a RecursionError, a 500).
    status, body = post_raw(served, "/api/portability/export", b"[" * 100_000, "alice@example.com")
    assert (status, body["error"]["code"]) == (400, "bad_request")
