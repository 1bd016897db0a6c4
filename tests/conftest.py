"""Fixtures: ``app`` runs every database test on SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from flask_migrate import upgrade
from sqlalchemy import text

from registration import create_app
from registration.extensions import db
from registration.models import Event, EventFormat, EventStatus
from registration.timeutil import set_clock

from .databases import skip_or_fail_without_postgres, temporary_postgres_database


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A PostgreSQL database for this run, migrated to head once (tests truncate after use)."""
    skip_or_fail_without_postgres()
    with temporary_postgres_database() as url:
        app = create_app("testing", SQLALCHEMY_DATABASE_URI=url)
        with app.app_context():
            upgrade()
            db.engine.dispose()
        yield url


def make_test_app(database_url: str, **overrides: Any) -> Flask:
    settings: dict[str, Any] = {
        "SQLALCHEMY_DATABASE_URI": database_url,
        "BASE_URL": "http://localhost",
        "SERVER_NAME": None,
    }
    settings.update(overrides)
    return create_app("testing", **settings)


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)],
)
def database_url(request: pytest.FixtureRequest, tmp_path: Any) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.sqlite'}"
    return request.getfixturevalue("postgres_database")


#: For a test that needs PostgreSQL itself (a second connection's row lock, killing a backend):
#: it runs only there, instead of being skipped on SQLite.
postgresql_only = pytest.mark.parametrize(
    "database_url", [pytest.param("postgresql", marks=pytest.mark.postgresql)], indirect=True
)


@pytest.fixture
def app(database_url: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Flask]:
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path / "instance"))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    app = make_test_app(database_url)
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            db.create_all()
        yield app
        db.session.remove()
        if db.engine.dialect.name == "postgresql":
            tables = ", ".join(t.name for t in db.metadata.sorted_tables)
            with db.engine.begin() as conn:
                conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        db.engine.dispose()
    set_clock(None)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask) -> FlaskCliRunner:
    return app.test_cli_runner()


@pytest.fixture
def clock() -> Iterator[Any]:
    """A settable clock: ``clock.now = datetime(...)``; ``clock.advance(hours=2)``."""

    class Clock:
        now = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)

        def advance(self, **delta: float) -> None:
            self.now = self.now + timedelta(**delta)

    c = Clock()
    set_clock(lambda: c.now)
    yield c
    set_clock(None)


def make_event(**overrides: Any) -> Event:
    """A published on-site event three weeks ahead, with the attributes given."""
    from registration.timeutil import utcnow

    start = overrides.pop("starts_at", utcnow() + timedelta(days=21))
    values: dict[str, Any] = {
        "slug": "werkstatt",
        "title": "Werkstatt",
        "format": EventFormat.ON_SITE,
        "status": EventStatus.PUBLISHED,
        "starts_at": start,
        "ends_at": start + timedelta(hours=5, minutes=30),
        "capacity_on_site": 10,
        "waitlist_enabled": True,
    }
    values.update(overrides)
    event = Event(**values)
    db.session.add(event)
    db.session.commit()
    return event


@pytest.fixture
def event_factory(app: Flask) -> Any:
    return make_event
