"""The OpenAPI document and the API app describe the same routes, and the document is valid.

Adding an /api route without documenting it (or removing one and leaving it documented)
fails here. What the routes answer is checked against the document by schemathesis, in
tests/integration/test_openapi.py.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from openapi_spec_validator import validate
from openapi_spec_validator.versions.shortcuts import get_spec_version
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount, Route
from starlette.testclient import TestClient

from db.engine import create_engine, session_factory
from portability.api import build_api_app
from portability.credentials import GatewayAddress
from portability.openapi import DOCUMENT
from storage.local import LocalStorage

METHODS = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}


@pytest.fixture
def app(tmp_path: Path) -> Starlette:
    # Building the app, and serving the two documents, touch neither database nor storage.
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}")
    return build_api_app(
        engine=engine,
        sessions=session_factory(engine),
        storage=LocalStorage(tmp_path / "storage"),
        master_key=bytes(32),
        endpoint=GatewayAddress("http://127.0.0.1:9000", "us-east-1"),
    )


def walk(routes: Iterable[BaseRoute], prefix: str = "") -> Iterable[tuple[str, str]]:
    """(method, path) of every route, mounted ones included; HEAD rides along with GET."""
    for route in routes:
        if isinstance(route, Mount):
            yield from walk(route.routes, prefix + route.path)
        elif isinstance(route, Route):
            for method in route.methods or ():
                if method != "HEAD":
                    yield method.lower(), prefix + route.path


def api_routes(app: Starlette) -> set[tuple[str, str]]:
    return {(m, p) for m, p in walk(app.routes) if p == "/api" or p.startswith("/api/")}


def documented() -> set[tuple[str, str]]:
    return {
        (method, path)
        for path, item in DOCUMENT["paths"].items()
        for method in item
        if method in METHODS
    }


def test_every_api_route_is_documented_and_every_operation_exists(app: Starlette) -> None:
    served = api_routes(app)
    assert len(served) >= 14  # the walk finds the routes at all
    assert served - documented() == set(), "routes missing from portability/openapi.py"
    assert documented() - served == set(), "documented operations that no route serves"


def test_dashboard_pages_are_not_part_of_the_document(app: Starlette) -> None:
    pages = {p for _, p in walk(app.routes) if not p.startswith("/api/")}
    assert "/credentials" in pages  # the dashboard is mounted on the same app
    assert not pages & set(DOCUMENT["paths"])


def test_the_document_is_valid_openapi_3_1() -> None:
    version = get_spec_version(DOCUMENT)
    assert (version.major, version.minor) == ("3", "1")
    validate(DOCUMENT)  # schemas included, against OpenAPI 3.1's JSON Schema dialect


def operations() -> Iterable[tuple[str, str, dict[str, Any]]]:
    for path, item in DOCUMENT["paths"].items():
        for method, operation in item.items():
            yield method, path, operation


def test_path_parameters_match_the_path_and_operation_ids_are_unique() -> None:
    ids = [operation["operationId"] for _, _, operation in operations()]
    assert len(ids) == len(set(ids))
    for method, path, operation in operations():
        in_path = set(re.findall(r"{(\w+)}", path))
        declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
        assert in_path == declared, f"{method} {path}"


def test_every_authenticated_operation_documents_its_errors() -> None:
    for method, path, operation in operations():
        responses = operation["responses"]
        if operation.get("security") == []:
            assert "401" not in responses, f"{method} {path}"
            continue
        assert "401" in responses, f"{method} {path}"
        assert ("403" in responses) == path.startswith("/api/admin/"), f"{method} {path}"
        if "{" in path:
            assert "404" in responses, f"{method} {path}"
        if "requestBody" in operation:
            assert {"400", "422"} <= set(responses), f"{method} {path}"


def test_the_document_and_the_reference_page_are_served(app: Starlette) -> None:
    with TestClient(app) as client:
        answer = client.get("/api/openapi.json")
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "application/json"
        assert answer.json() == DOCUMENT
        page = client.get("/api/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    # Self-contained: nothing to fetch, from here or from the internet.
    assert "<script" not in html and "<link" not in html and "src=" not in html
    for method, path, operation in operations():
        assert f"{method.upper()} {path}" in html
        assert f'id="{operation["operationId"]}"' in html
        for parameter in operation.get("parameters", []):
            assert f"<code>{parameter['name']}</code>" in html
    for name in DOCUMENT["components"]["schemas"]:
        assert f'id="schema-{name}"' in html
    assert '<a href="#schema-IssueCredential">IssueCredential</a>' in html
    assert "<td>422</td><td>The request is understood but refused" in html
