"""Health checks for load balancers and monitoring: ``/healthz`` and ``/readyz``.

``/healthz`` answers as long as the process serves requests (liveness). ``/readyz`` also checks
what the service needs to do its work: the database answers, its schema is at the newest Alembic
revision (a host deployed with new code before ``flask db upgrade`` ran is not ready), and the
outbox is moving (no pending email due for longer than ``OUTBOX_STUCK_MINUTES``, no expired lease of
a crashed worker left behind, no email failing for longer than that since it was written). Both
answer JSON with counts and revision ids only: no personal data.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import Blueprint, Flask, Response, current_app, jsonify
from sqlalchemy import Connection, and_, func, or_, select, text
from sqlalchemy.exc import SQLAlchemyError

from .extensions import csrf, db
from .models import OutboxMessage, OutboxStatus
from .timeutil import utcnow

log = logging.getLogger(__name__)

bp = Blueprint("health", __name__)

#: Default for ``OUTBOX_STUCK_MINUTES``: the worker passes every few seconds, so a due email that
#: waited this long means no worker is running (or it cannot get through).
DEFAULT_OUTBOX_STUCK_MINUTES = 15


def _answer(body: dict[str, Any], status: int) -> Response:
    response = jsonify(body)
    response.status_code = status
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.get("/healthz")
def healthz() -> Response:
    return _answer({"status": "ok"}, 200)


def migration_heads(app: Flask) -> set[str]:
    """The head revision(s) of the migrations folder (read once per process)."""
    heads = app.extensions.get("health_migration_heads")
    if heads is None:
        script = ScriptDirectory(str(app.config["MIGRATIONS_DIR"]))
        heads = frozenset(script.get_heads())
        app.extensions["health_migration_heads"] = heads
    return set(heads)


def check_database(conn: Connection) -> dict[str, Any]:
    conn.execute(text("SELECT 1"))
    return {"ok": True}


def check_migrations(conn: Connection) -> dict[str, Any]:
    current = set(MigrationContext.configure(conn).get_current_heads())
    head = migration_heads(current_app._get_current_object())  # type: ignore[attr-defined]
    return {"ok": current == head, "current": sorted(current), "head": sorted(head)}


def check_outbox(conn: Connection) -> dict[str, Any]:
    """Due emails nobody is working on, leases of crashed workers that nobody took over, and
    emails that keep failing.

    A mail that fails transiently (a relay answering 4xx, refusing connections) waits 1, 2,
    4 ... minutes between attempts, so it is never "due and waiting"; it counts as ``failing``
    once it is older than the limit and not yet sent. Its age is taken from ``created_at``,
    which is at or before its first failure (rows are due when written): the check reports it
    at the latest ``OUTBOX_STUCK_MINUTES`` after the first failure, not only after the last
    attempt. (An organiser's retry of an old failed mail counts until the worker sends it.)

    ``failed_recently`` (mails written within the limit that failed for good: a refused
    address, a render error) is reported but does not make the service unready: one wrong
    address must not take the web hosts out of the load balancer."""
    minutes = int(current_app.config.get("OUTBOX_STUCK_MINUTES") or DEFAULT_OUTBOX_STUCK_MINUTES)
    now = utcnow()
    limit = now - timedelta(minutes=minutes)
    pending = OutboxMessage.status == OutboxStatus.PENDING
    not_leased = or_(OutboxMessage.locked_until.is_(None), OutboxMessage.locked_until < now)

    def count(*where: Any) -> int:
        return conn.scalar(select(func.count()).select_from(OutboxMessage).where(*where)) or 0

    overdue = count(pending, not_leased, OutboxMessage.next_attempt_at < limit)
    expired_leases = count(and_(pending, OutboxMessage.locked_until < limit))
    failing = count(pending, OutboxMessage.attempts > 0, OutboxMessage.created_at < limit)
    failed_recently = count(
        OutboxMessage.status == OutboxStatus.FAILED, OutboxMessage.created_at >= limit
    )
    return {
        "ok": not overdue and not expired_leases and not failing,
        "overdue": overdue,
        "expired_leases": expired_leases,
        "failing": failing,
        "failed_recently": failed_recently,
        "stuck_after_minutes": minutes,
    }


@bp.get("/readyz")
def readyz() -> Response:
    checks: dict[str, dict[str, Any]] = {}
    try:
        with db.engine.connect() as conn:
            for name, check in (
                ("database", check_database),
                ("migrations", check_migrations),
                ("outbox", check_outbox),
            ):
                try:
                    checks[name] = check(conn)
                except SQLAlchemyError as exc:
                    # The reason goes to the log only: driver messages can name hosts and users.
                    log.warning("readyz: %s check failed: %s", name, exc)
                    conn.rollback()
                    checks[name] = {"ok": False, "error": "query failed"}
    except SQLAlchemyError as exc:
        log.warning("readyz: database unreachable: %s", exc)
        checks = {"database": {"ok": False, "error": "unreachable"}}
    failed = sorted(name for name, result in checks.items() if not result["ok"])
    body: dict[str, Any] = {"status": "unavailable" if failed else "ok", "checks": checks}
    if failed:
        body["failed"] = failed
    return _answer(body, 503 if failed else 200)


def init_app(app: Flask) -> None:
    csrf.exempt(bp)
    app.register_blueprint(bp)
