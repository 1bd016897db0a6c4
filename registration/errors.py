"""Error pages: JSON under /api/, HTML elsewhere. Never a stack trace."""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

from flask import Flask, jsonify, render_template, request
from flask_babel import gettext as _
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import InterfaceError, OperationalError
from werkzeug.exceptions import HTTPException, InternalServerError, TooManyRequests

from . import ratelimit
from .extensions import db

log = logging.getLogger(__name__)

#: Seconds a client should wait before trying again when the database is away (a restart of
#: PostgreSQL takes a few; the pool reconnects by itself, see SQLALCHEMY_ENGINE_OPTIONS).
RETRY_AFTER_UNAVAILABLE = 5


def _rollback_quietly() -> None:
    """End the request's transaction; when even that fails (the connection is gone), drop
    the session, so the error answer itself cannot fail."""
    try:
        db.session.rollback()
    except Exception:  # whatever went wrong, the answer must still go out
        db.session.remove()


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


def _is_unavailable(exc: OperationalError | InterfaceError) -> bool:
    """Whether the database is away or busy, rather than the statement wrong: SQLite reports
    both as OperationalError, PostgreSQL (psycopg) only the first."""
    if isinstance(exc.orig, sqlite3.OperationalError):
        text = str(exc.orig).lower()
        return any(word in text for word in ("locked", "busy", "unable to open", "disk i/o"))
    return True


def handle_database_unavailable(exc: OperationalError | InterfaceError) -> Any:
    """The database is restarting, unreachable or dropped the connection: a calm 503 with
    ``Retry-After`` (JSON on the API), never a 500. A wrong statement stays a 500."""
    if not _is_unavailable(exc):
        raise exc
    _rollback_quietly()
    log.warning("database unavailable: %s", type(exc.orig).__name__ if exc.orig else exc)
    headers = {"Retry-After": str(RETRY_AFTER_UNAVAILABLE)}
    if _wants_json():
        message = _("The service is briefly unavailable. Please try again in a few seconds.")
        return jsonify({"error": "unavailable", "message": message}), 503, headers
    return render_template("errors/error.html", code=503, error=None), 503, headers


def handle_internal_error(exc: InternalServerError) -> Any:
    """Unhandled exceptions end here (outside tests, where they propagate)."""
    original = getattr(exc, "original_exception", None)
    if isinstance(original, OperationalError | InterfaceError):
        return handle_database_unavailable(original)
    _rollback_quietly()
    return handle_http_error(exc)


def init_app(app: Flask) -> None:
    app.register_error_handler(HTTPException, handle_http_error)
    app.register_error_handler(CSRFError, handle_csrf_error)
    app.register_error_handler(TooManyRequests, handle_too_many_requests)
    app.register_error_handler(InternalServerError, handle_internal_error)
    app.register_error_handler(OperationalError, handle_database_unavailable)
    app.register_error_handler(InterfaceError, handle_database_unavailable)
