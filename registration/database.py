"""Database plumbing: a UTC datetime column type, SQLite settings, pipelined statements, the
lock timeout."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

from flask import Flask, current_app, jsonify, render_template, request
from psycopg import Pipeline, RawCursor
from sqlalchemy import (
    Connection,
    DateTime,
    Engine,
    Select,
    String,
    bindparam,
    event,
    func,
    select,
    true,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import Compiled
from sqlalchemy.types import TypeDecorator

from .extensions import db, migrate
from .services.errors import Busy


class UTCDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on every database.

    PostgreSQL stores ``timestamptz``; SQLite has no zone support, so the value is stored as naive
    UTC and marked UTC again when read.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("UTCDateTime needs an aware datetime")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def _configure_sqlite(engine: Engine) -> None:
    """Make SQLite safe for concurrent writers.

    Every transaction starts with ``BEGIN IMMEDIATE``: it takes the write lock up front, so two
    sign-ups that read the seat count cannot both decide there is a seat left (a deferred
    transaction would read first and fail or race on the upgrade to a write lock). Writers queue for
    up to ``busy_timeout``. That serialises requests, which is fine for the embedded default;
    production uses PostgreSQL with row locks.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # let us emit BEGIN ourselves
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA busy_timeout = 30000")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def init_app(app: Flask) -> None:
    """Register the database, migrations, the SQLite settings and the answer to :class:`Busy`
    with ``app``."""
    db.init_app(app)
    app.register_error_handler(Busy, _answer_busy)
    migrate.init_app(app, db, directory=str(app.config["MIGRATIONS_DIR"]), render_as_batch=True)
    with app.app_context():
        engine = db.engine
        if engine.dialect.name == "sqlite":
            _configure_sqlite(engine)


#: Set in ``session.info`` when a transaction changed what public pages show; the page cache
#: (public/pagecache.py) empties itself after such a commit. ORM changes set it by themselves;
#: Core statements on those tables (the sign-up's prebuilt INSERTs) set it explicitly.
PAGES_CHANGED = "page_cache_stale"


def execute_pipelined(
    session: Session,
    statements: Sequence[tuple[Select[Any], Mapping[str, Any]]],
    *,
    commit: bool = False,
) -> list[list[tuple[Any, ...]]]:
    """Run ``statements`` (Core SELECTs, also ones with data-modifying CTEs, each with its
    parameters) in order in the session's transaction, commit it if ``commit``, and return
    each statement's rows, converted by the columns' types as usual.

    On PostgreSQL with psycopg all of it goes to the server in one round trip (pipeline mode).
    The server still runs the statements one after the other, each with its own snapshot, so
    a statement sees what was committed while an earlier one waited for a row lock; and a lock
    taken by the first is held only while the server works, not while this process waits for
    answers and for its turn on the CPU. That is what a sign-up needs: every sign-up for an
    event queues for its lock. Elsewhere (other databases, psycopg with a libpq older than 14)
    the statements run one after the other, with the same results.

    ``commit`` needs a session with nothing left to flush (the pipeline bypasses the unit of
    work); the session's own commit then only ends its bookkeeping (and runs its hooks).

    Parameters, and the statements' own literals, go to the driver as given (no bind
    processing): ints, strings, bools, aware datetimes and ``StrEnum`` members. ``IN`` (an
    expanding parameter) is not supported; write it as ``OR``.
    """
    if commit and (session.new or session.dirty or session.deleted):
        raise RuntimeError("execute_pipelined(commit=True) with unflushed changes")
    connection = session.connection()
    dialect = connection.dialect
    if dialect.driver != "psycopg" or not Pipeline.is_supported():  # libpq 14+ has pipelines
        results = [
            [tuple(row) for row in session.execute(stmt, params)] for stmt, params in statements
        ]
    else:
        results = _pipeline(connection, statements, commit)
    if commit:
        session.commit()
    return results


def _pipeline(
    connection: Connection,
    statements: Sequence[tuple[Select[Any], Mapping[str, Any]]],
    commit: bool,
) -> list[list[tuple[Any, ...]]]:
    dialect = connection.dialect
    raw = connection.connection.driver_connection
    compiled = [_Compiled.of(stmt, dialect) for stmt, _ in statements]
    cursors = []
    sql = ""
    try:
        with raw.pipeline():
            for statement, (_, params) in zip(compiled, statements, strict=True):
                sql = statement.sql
                cursor = RawCursor(raw)
                cursor.execute(sql, statement.parameters(params))
                cursors.append(cursor)
            if commit:
                raw.commit()
    except dialect.loaded_dbapi.Error as exc:
        # As SQLAlchemy would raise it (e.g. IntegrityError), parameters hidden as configured.
        raise DBAPIError.instance(
            sql, None, exc, dialect.loaded_dbapi.Error,
            hide_parameters=connection.engine.hide_parameters, dialect=dialect,
        ) from exc  # fmt: skip
    return [
        [
            tuple(p(v) if p else v for p, v in zip(statement.processors, row, strict=True))
            for row in cursor.fetchall()
        ]
        for statement, cursor in zip(compiled, cursors, strict=True)
    ]


class _Compiled:
    """A statement compiled once for psycopg's ``RawCursor``: PostgreSQL's own ``$1``
    placeholders, so psycopg need not rewrite the query text on every execution (it caches
    that only for short statements)."""

    #: (id of the statement, dialect name) -> compiled; the entry keeps the statement alive,
    #: so its id stays unique. The statements are module-level constants.
    _cache: ClassVar[dict[tuple[int, str], tuple[Select[Any], _Compiled]]] = {}

    def __init__(self, stmt: Select[Any], dialect: Dialect) -> None:
        numbered = type(dialect)(paramstyle="numeric_dollar")
        self.compiled: Compiled = stmt.compile(dialect=numbered)
        self.sql = str(self.compiled)
        self.names = list(self.compiled.positiontup or ())
        #: The statement's own values (its literals), looked up once.
        self.literals = {
            name: bind.effective_value
            for name, bind in self.compiled.binds.items()
            if not bind.required
        }
        self.processors = [c.type.result_processor(dialect, None) for c in stmt.selected_columns]

    @classmethod
    def of(cls, stmt: Select[Any], dialect: Dialect) -> _Compiled:
        key = (id(stmt), dialect.name)
        found = cls._cache.get(key)
        if found is None:
            found = cls._cache[key] = (stmt, cls(stmt, dialect))
        return found[1]

    def parameters(self, given: Mapping[str, Any]) -> list[Any]:
        """The values of the placeholders in order: ``given``, and the statement's literals."""
        values = {**self.literals, **given}
        return [values[name] for name in self.names]


# --- Lock timeout ---------------------------------------------------------------------------

#: Seconds a transaction waits for an event's lock before giving up (PostgreSQL), unless the
#: app's config sets ``SIGNUP_LOCK_TIMEOUT``. Like pretix's quota locks: a transaction stuck
#: while holding the lock turns the requests behind it into a clear "busy, try again" instead
#: of a pile of waiting requests that takes every worker with it.
DEFAULT_LOCK_TIMEOUT = 3.0

#: SQLSTATE lock_not_available: a lock wait ended by ``lock_timeout`` (or ``NOWAIT``).
_LOCK_NOT_AVAILABLE = "55P03"

#: ``SET LOCAL lock_timeout`` as a SELECT (``set_config(..., is_local => true)``), so that it
#: can go to the server in the same pipeline as the lock. Parameter: ``lock_timeout`` (ms, text).
SET_LOCK_TIMEOUT = select(
    func.set_config("lock_timeout", bindparam("lock_timeout", type_=String), true())
)


def lock_timeout() -> float:
    """The configured lock timeout in seconds (``SIGNUP_LOCK_TIMEOUT``; 0 waits for ever)."""
    return float(current_app.config.get("SIGNUP_LOCK_TIMEOUT", DEFAULT_LOCK_TIMEOUT))


def lock_timeout_params() -> dict[str, str]:
    """The parameters of :data:`SET_LOCK_TIMEOUT` for the configured timeout."""
    return {"lock_timeout": str(math.ceil(lock_timeout() * 1000))}


def is_lock_timeout(exc: BaseException) -> bool:
    """Whether ``exc`` (a DBAPIError) says a lock was not granted within the lock timeout."""
    return getattr(getattr(exc, "orig", None), "sqlstate", None) == _LOCK_NOT_AVAILABLE


def busy() -> Busy:
    """The error for a lock not granted in time, with a sensible ``Retry-After``."""
    return Busy(retry_after=max(1, math.ceil(lock_timeout())))


def _answer_busy(exc: Busy) -> Any:
    """The answer of any request that ran into a lock timeout and did not handle it itself:
    503 with ``Retry-After``, JSON under /api/, else the error page (which asks to try again)."""
    db.session.rollback()
    headers = {"Retry-After": str(exc.retry_after)}
    if request.path.startswith("/api/"):
        return jsonify({"error": exc.code, "message": str(exc)}), 503, headers
    return render_template("errors/error.html", code=503, error=exc), 503, headers
