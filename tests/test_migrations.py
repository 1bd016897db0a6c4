"""The committed migrations produce exactly the models' schema, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask import Flask
from flask_migrate import downgrade, upgrade
from sqlalchemy import inspect

from registration import create_app
from registration.extensions import db

from .databases import skip_or_fail_without_postgres, temporary_postgres_database


@contextmanager
def fresh_database(kind: str, tmp_path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrations.sqlite'}"
    else:
        skip_or_fail_without_postgres()
        with temporary_postgres_database("registration_migrations") as url:
            yield url


@contextmanager
def migrated_app(kind: str, tmp_path) -> Iterator[Flask]:
    """An app on a fresh database of ``kind`` upgraded to head, inside its app context."""
    with fresh_database(kind, tmp_path) as url:
        app = create_app("testing", SQLALCHEMY_DATABASE_URI=url)
        with app.app_context():
            upgrade()
            try:
                yield app
            finally:
                db.engine.dispose()


@pytest.mark.parametrize(
    "kind", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)]
)
def test_migrations_match_the_models(kind, tmp_path, monkeypatch):
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path))
    with migrated_app(kind, tmp_path):
        with db.engine.connect() as conn:
            # Alembic cannot compare SQLite's reflected server defaults reliably ('' vs "''").
            context = MigrationContext.configure(
                conn,
                opts={"compare_type": True, "compare_server_default": kind == "postgresql"},
            )
            differences = compare_metadata(context, db.metadata)
            tables = set(inspect(conn).get_table_names())
        assert differences == []
        assert {"events", "registrations", "organisers", "outbox"} <= tables

        # The partial unique index exists in the migrated database (invariant 6).
        indexes = {ix["name"]: ix for ix in inspect(db.engine).get_indexes("registrations")}
        assert indexes["uq_registrations_event_email_active"]["unique"]

        downgrade(revision="base")
        assert set(inspect(db.engine).get_table_names()) <= {"alembic_version"}


@pytest.mark.parametrize(
    "kind", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)]
)
def test_outbox_status_check_allows_exactly_the_model_statuses(kind, tmp_path, monkeypatch):
    """CHECK constraints are invisible to autogenerate; prove the migrated one matches the enum."""
    from sqlalchemy import text
    from sqlalchemy.exc import IntegrityError

    from registration.models import OutboxStatus

    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path))
    with migrated_app(kind, tmp_path):
        insert = text(
            "INSERT INTO outbox (kind, dedupe_key, status, attempts, next_attempt_at, "
            "last_error, created_at) VALUES ('x', :key, :status, 0, :now, '', :now)"
        )
        now = "2030-01-01 00:00:00"
        with db.engine.begin() as conn:
            for status in OutboxStatus:
                conn.execute(insert, {"key": status.value, "status": status.value, "now": now})
        with pytest.raises(IntegrityError), db.engine.begin() as conn:
            conn.execute(insert, {"key": "bad", "status": "lost", "now": now})
