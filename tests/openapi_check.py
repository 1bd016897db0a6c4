"""Check API responses against registration/api/openapi.json (used by the API tests).

``watch_responses(app)`` registers an ``after_request`` hook that validates every /api/v1 response
of a test against the document: its status code must be documented for the operation, its body
must match the documented JSON Schema. The violations are collected and checked after the test
(an exception inside the hook would only turn into a 500)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from functools import cache
from typing import Any

from flask import Flask, Response, request
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from registration.api.views import OPENAPI_PATH

PREFIX = "/api/v1"
DOCUMENT_URI = "urn:openapi"
METHODS = ("get", "put", "post", "patch", "delete")


@cache
def document() -> dict[str, Any]:
    return json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))


def spec_path(rule: str) -> str:
    """``/api/v1/events/<slug>`` -> ``/events/{slug}`` (converters dropped)."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.removeprefix(PREFIX))


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    """Follow a local ``$ref`` to a response object (not a schema: those jsonschema resolves)."""
    while "$ref" in node:
        target: Any = document()
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


@cache
def _registry() -> Registry:
    resource = Resource.from_contents(document(), default_specification=DRAFT202012)
    return Registry().with_resource(DOCUMENT_URI, resource)


def _absolute_refs(schema: Any) -> Any:
    """Make ``#/components/...`` refs point into the document (they are relative to it)."""
    if isinstance(schema, dict):
        return {
            key: (DOCUMENT_URI + value if key == "$ref" and value.startswith("#") else
                  _absolute_refs(value))
            for key, value in schema.items()
        }  # fmt: skip
    if isinstance(schema, list):
        return [_absolute_refs(item) for item in schema]
    return schema


def problems(path: str, method: str, status: int, content_type: str, body: bytes) -> list[str]:
    """What is wrong with a response to ``method path`` (a path of the document)."""
    operation = document()["paths"].get(path, {}).get(method.lower())
    where = f"{method} {path} -> {status}"
    if operation is None:
        return [f"{where}: operation not in the document"]
    documented = operation["responses"].get(str(status))
    if documented is None:
        return [f"{where}: status not documented ({', '.join(operation['responses'])})"]
    content = _resolve(documented).get("content", {})
    if not content:
        return []
    media_type = content_type.split(";")[0].strip()
    if media_type not in content:
        return [f"{where}: content type {content_type!r} not documented"]
    schema = content[media_type].get("schema")
    if schema is None:
        return []
    validator = Draft202012Validator(
        _absolute_refs(schema), registry=_registry(), format_checker=FormatChecker()
    )
    instance = json.loads(body)
    return [
        f"{where}: {'/'.join(map(str, error.absolute_path)) or '(body)'}: {error.message}"
        for error in validator.iter_errors(instance)
    ]


class ResponseWatcher:
    def __init__(self) -> None:
        self.violations: list[str] = []
        self.checked = 0

    def __call__(self, response: Response) -> Response:
        rule = request.url_rule
        if rule is None or not rule.rule.startswith(PREFIX):
            return response
        if response.status_code == 405:  # not an operation; the method is simply not offered
            return response
        self.checked += 1
        self.violations.extend(
            problems(
                spec_path(rule.rule),
                request.method,
                response.status_code,
                response.content_type or "",
                response.get_data(),
            )
        )
        return response


def watch_responses(app: Flask) -> Iterator[ResponseWatcher]:
    """For a fixture: yields the watcher, then fails on anything that does not match."""
    watcher = ResponseWatcher()
    app.after_request(watcher)
    yield watcher
    assert not watcher.violations, "responses that do not match the OpenAPI document:\n" + (
        "\n".join(watcher.violations)
    )
