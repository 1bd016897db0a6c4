"""Database plumbing: a UTC datetime column type and SQLite settings."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flask import Flask
from sqlalchemy import DateTime, Engine, event
from sqlalchemy.types import TypeDecorator

from .extensions import db, migrate


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
    """Register the database, migrations and the SQLite settings with ``app``."""
    db.init_app(app)
    migrate.init_app(app, db, directory=str(app.config["MIGRATIONS_DIR"]), render_as_batch=True)
    with app.app_context():
        engine = db.engine
        if engine.dialect.name == "sqlite":
            _configure_sqlite(engine)


#: Set in ``session.info`` when a transaction changed what public pages show; the page cache
#: (public/pagecache.py) empties itself after such a commit. ORM changes set it by themselves;
#: Core statements on those tables (the sign-up's prebuilt INSERTs) set it explicitly.
PAGES_CHANGED = "page_cache_stale"
