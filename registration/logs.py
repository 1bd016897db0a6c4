"""Structured logs: one line per request, unhandled errors with their traceback, a request id.

Every line is JSON (``LOG_FORMAT=json``, the default: one object per line for a log collector) or
plain text (``LOG_FORMAT=text``, for a terminal). Each request gets an id, taken from a well-formed
incoming ``X-Request-ID`` header (a proxy's) or generated, and echoed in the response, so a
participant's "it failed at 10:42" can be found in the log.

No personal data: participants' links carry secret tokens in the path (``/manage/<token>``,
``/join/<token>``, ``/admin/c/<token>``, password-reset links), so the line names the URL rule with
its placeholders, never the path as typed; a path that matched no rule is logged with long or
token-like segments masked. Query strings, IP addresses, user agents and form data are not
logged (the reverse proxy's own log has the address, if the organisation wants it).
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from flask import Flask, Response, g, has_request_context, request
from flask.logging import default_handler, wsgi_errors_stream

#: The app's logger (Flask names it after the package); the modules' loggers are its children.
LOGGER_NAME = "registration"
log = logging.getLogger(f"{LOGGER_NAME}.requests")

#: What an incoming X-Request-ID may look like (UUIDs, nginx's $request_id, ...); anything else is
#: replaced, so a client cannot write arbitrary text into the log.
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")

#: Path segments kept as they are when no URL rule matched: short ones, and slug-like ones made of
#: lowercase words. Everything else (tokens, hashes, addresses) is masked.
_SLUG_RE = re.compile(r"^[a-z0-9]{1,15}(?:-[a-z0-9]{1,15})+(?:\.[a-z0-9]{1,8})?$")
MASK = "<masked>"

#: Fields of a request line, in the order a text line shows them.
REQUEST_FIELDS = ("method", "path", "endpoint", "status", "duration_ms")


def mask_path(path: str) -> str:
    """``/manage/Abc...xyz`` -> ``/manage/<masked>``; short and slug-like segments stay."""

    def keep(segment: str) -> bool:
        if "@" in segment:
            return False
        return len(segment) < 16 or bool(_SLUG_RE.match(segment))

    return "/".join(segment if keep(segment) else MASK for segment in path.split("/"))


def logged_path() -> str:
    """The request's path for the log: the URL rule (``/manage/<token>``) or a masked path."""
    rule = request.url_rule
    return rule.rule if rule is not None else mask_path(request.path)


def request_id() -> str | None:
    """The current request's id (``None`` outside a request)."""
    if not has_request_context():
        return None
    return g.get("request_id")


class RequestIdFilter(logging.Filter):
    """Stamps every record with the id of the request it was logged in (``-`` outside one)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "request_id", None):
            record.request_id = request_id() or "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request id, request fields, and
    the traceback of an error."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None) or request_id(),
        }
        for name in REQUEST_FIELDS:
            if hasattr(record, name):
                entry[name] = getattr(record, name)
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["traceback"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False, default=str)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"


def make_formatter(kind: str) -> logging.Formatter:
    if kind == "text":
        return logging.Formatter(TEXT_FORMAT)
    return JsonFormatter()


def _handler() -> logging.Handler:
    """The one handler of the app's logger (shared by the apps of a process, e.g. in tests).

    It writes to the WSGI server's error stream (gunicorn's error log) or stderr, as Flask's own
    default handler does.
    """
    logger = logging.getLogger(LOGGER_NAME)
    for handler in logger.handlers:
        if getattr(handler, "registration_handler", False):
            return handler
    handler = logging.StreamHandler(wsgi_errors_stream)  # type: ignore[arg-type]
    handler.registration_handler = True  # type: ignore[attr-defined]
    handler.addFilter(RequestIdFilter())
    logger.addHandler(handler)
    return handler


def _start_request() -> None:
    incoming = request.headers.get("X-Request-ID", "")
    g.request_id = incoming if _REQUEST_ID_RE.match(incoming) else uuid.uuid4().hex
    g.request_started = time.perf_counter()


def _log_request(response: Response) -> Response:
    rid = g.get("request_id")
    if rid is None:  # a request that failed before our first hook ran
        _start_request()
        rid = g.request_id
    response.headers["X-Request-ID"] = rid
    started = g.get("request_started")
    duration = round((time.perf_counter() - started) * 1000, 1) if started else None
    fields = {
        "method": request.method,
        "path": logged_path(),
        "endpoint": request.endpoint,
        "status": response.status_code,
        "duration_ms": duration,
        "request_id": rid,
    }
    if log.isEnabledFor(logging.INFO):
        # makeRecord + handle is what log.info does, minus findCaller's walk up the stack
        # (a request line's caller is always this function): a tenth of a cached page's cost.
        args = (fields["method"], fields["path"], fields["status"], duration)
        record = log.makeRecord(
            log.name, logging.INFO, __file__, 0, "%s %s %s %sms", args, None, _log_request.__name__,
            fields,
        )  # fmt: skip
        log.handle(record)
    return response


def log_exception(exc_info: Any) -> None:
    """Replaces Flask's ``log_exception``, which would log the raw path (with its token)."""
    log.error(
        "unhandled exception in %s %s",
        request.method,
        logged_path(),
        exc_info=exc_info,
        extra={
            "method": request.method,
            "path": logged_path(),
            "endpoint": request.endpoint,
            "request_id": request_id(),
        },
    )


def init_app(app: Flask) -> None:
    """Configure the ``registration`` logger from LOG_FORMAT / LOG_LEVEL and log each request."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.removeHandler(default_handler)  # Flask adds it when it sees no handler: ours replaces it
    handler = _handler()
    handler.setFormatter(make_formatter(app.config.get("LOG_FORMAT", "json")))
    logger.setLevel(app.config.get("LOG_LEVEL") or "INFO")
    app.logger  # noqa: B018 - created now, so Flask sees our handler and adds none of its own
    # First before-request hook, so the id and the clock exist even if a later hook fails.
    app.before_request_funcs.setdefault(None, []).insert(0, _start_request)
    app.after_request(_log_request)
    # Flask's own version logs the raw path; Flask calls ``self.log_exception`` (meant to be
    # overridden), so the instance attribute takes its place for this app only.
    app.log_exception = log_exception  # type: ignore[method-assign]
