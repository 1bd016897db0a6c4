"""Error pages: JSON under /api/, HTML elsewhere. Never a stack trace."""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify, render_template, request
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError, TooManyRequests

from . import ratelimit
from .extensions import db


def _wants_json() -> bool:
    return request.path.startswith("/api/")


def handle_http_error(exc: HTTPException) -> Any:
    code = exc.code or 500
    if _wants_json():
        return jsonify({"error": (exc.name or "error").lower().replace(" ", "_")}), code
    return render_template("errors/error.html", code=code, error=exc), code


def handle_csrf_error(exc: CSRFError) -> Any:
    """A form sent with a missing or stale token: explain, never a bare 400."""
    if _wants_json():
        return jsonify({"error": "csrf", "message": exc.description}), 400
    return render_template("errors/error.html", code=400, error=exc, csrf=True), 400


def handle_too_many_requests(exc: TooManyRequests) -> Any:
    """A rate limit was hit (see ratelimit.py): say so, and when to try again."""
    seconds = ratelimit.retry_after()
    if _wants_json():
        message = _("Too many requests. Please try again later.")
        response = jsonify({"error": "rate_limited", "message": message, "retry_after": seconds})
    else:
        embed = (request.endpoint or "").startswith("public.embed")
        response = render_template(
            "errors/too_many_requests.html", retry_after=seconds, embed=embed
        )
    headers = {"Retry-After": str(seconds)} if seconds is not None else {}
    return response, 429, headers


def handle_internal_error(exc: InternalServerError) -> Any:
    """Unhandled exceptions end here (outside tests, where they propagate)."""
    db.session.rollback()
    return handle_http_error(exc)


def init_app(app: Flask) -> None:
    app.register_error_handler(HTTPException, handle_http_error)
    app.register_error_handler(CSRFError, handle_csrf_error)
    app.register_error_handler(TooManyRequests, handle_too_many_requests)
    app.register_error_handler(InternalServerError, handle_internal_error)
