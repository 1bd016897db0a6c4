"""Flask's JSON, hardened for input from anyone.

A body nested a few thousand levels deep (``[[[[...]]]]``) makes Python's parser raise
RecursionError, which Werkzeug does not treat as invalid JSON: the request ended as a 500. Here
it is a ValueError like any other malformed body, so ``request.get_json()`` reports it as such
(the API answers 400 ``invalid_json``).
"""

from __future__ import annotations

from typing import Any

from flask import Flask
from flask.json.provider import DefaultJSONProvider


class JSONProvider(DefaultJSONProvider):
    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None


def init_app(app: Flask) -> None:
    app.json = JSONProvider(app)
