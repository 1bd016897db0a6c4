"""The OpenAPI 3.1 document: valid, served, and in step with the routes (both directions)."""

from __future__ import annotations

import json

from openapi_spec_validator import OpenAPIV31SpecValidator

from registration.api.views import OPENAPI_PATH

from .openapi_check import METHODS, PREFIX, document, problems, spec_path


def test_document_is_valid_openapi_3_1():
    spec = json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))
    assert spec["openapi"].startswith("3.1.")
    errors = [str(error.message) for error in OpenAPIV31SpecValidator(spec).iter_errors()]
    assert errors == []


def test_document_lists_exactly_the_api_routes(app):
    routes = {
        (spec_path(rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith(PREFIX + "/")
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    documented = {
        (path, method)
        for path, item in document()["paths"].items()
        for method in item
        if method in METHODS
    }
    assert len(routes) >= 9
    assert routes - documented == set(), "routes missing from the document"
    assert documented - routes == set(), "documented operations without a route"


def test_token_operations_need_the_bearer_scheme_and_document_401():
    spec = document()
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer", "description": "An API token, e.g. wsr_...",
    }  # fmt: skip
    protected = {
        (path, method)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if method in METHODS and operation.get("security")
    }
    assert protected == {
        ("/events", "post"),
        ("/events/{slug}", "patch"),
        ("/events/{slug}/registrations", "get"),
    }
    for path, method in protected:
        assert "401" in spec["paths"][path][method]["responses"]


def test_served_document_is_the_file_in_the_repository(client, app):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.json == json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))


def test_the_response_check_finds_mismatches():
    """The checker the API tests run on every response is not a no-op."""
    ok = json.dumps({"error": "not_found"}).encode()
    assert problems("/events/{slug}", "GET", 404, "application/json", ok) == []
    assert (
        "status not documented" in problems("/events/{slug}", "GET", 418, "application/json", ok)[0]
    )
    assert "content type" in problems("/events/{slug}", "GET", 404, "text/html", ok)[0]
    wrong = json.dumps({"slug": "x", "title": 3}).encode()
    found = problems("/events/{slug}", "GET", 200, "application/json", wrong)
    assert any("'subtitle' is a required property" in p for p in found)
    assert any("title: 3 is not of type 'string'" in p for p in found)
    page = {"event": "x", "registrations": [{"id": 1}], "page": 1, "per_page": 50, "total": 1,
            "pages": 1}  # fmt: skip
    nested = problems("/events/{slug}/registrations", "GET", 200, "application/json",
                      json.dumps(page).encode())  # fmt: skip
    assert any("registrations/0" in p and "'email' is a required property" in p for p in nested)
