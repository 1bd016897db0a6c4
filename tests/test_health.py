"""/healthz and /readyz: database, migrations at head, an outbox that moves; no personal data."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from alembic.script import ScriptDirectory
from flask import Flask
from flask_migrate import stamp, upgrade
from sqlalchemy import select

from registration import create_app
from registration.extensions import db
from registration.models import OutboxMessage, OutboxStatus
from registration.services import signup

from .conftest import make_event
from .databases import skip_or_fail_without_postgres, temporary_postgres_database

EMAIL = "ada.lovelace@example.org"


def at_head(app: Flask) -> None:
    """The ``app`` fixture builds SQLite with create_all(); record that it is at head."""
    if db.engine.dialect.name == "sqlite":
        stamp()


def sign_up() -> OutboxMessage:
    event = make_event()
    signup.register(
        event,
        signup.SignupData(
            email=EMAIL, first_name="Ada", last_name="Lovelace", privacy_consent=True
        ),
    )
    db.session.commit()
    row = db.session.scalars(select(OutboxMessage)).one()
    db.session.commit()  # on SQLite an open transaction holds the write lock /readyz needs
    return row


def test_healthz_answers_without_login_or_database(tmp_path, monkeypatch):
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path))
    app = create_app("testing", SQLALCHEMY_DATABASE_URI="sqlite:////nonexistent/dir/x.sqlite")
    response = app.test_client().get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok"}
    assert response.headers["Cache-Control"] == "no-store"


def test_ready_when_database_answers_schema_is_at_head_and_outbox_is_empty(app, client):
    at_head(app)
    response = client.get("/readyz")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["status"] == "ok" and "failed" not in body
    head = ScriptDirectory(str(app.config["MIGRATIONS_DIR"])).get_current_head()
    assert body["checks"]["database"] == {"ok": True}
    assert body["checks"]["migrations"] == {"ok": True, "current": [head], "head": [head]}
    assert body["checks"]["outbox"] == {
        "ok": True,
        "overdue": 0,
        "expired_leases": 0,
        "stuck_after_minutes": 15,
    }
    assert response.headers["Cache-Control"] == "no-store"


def test_a_due_email_nobody_sends_makes_the_service_unready(app, client, clock):
    at_head(app)
    row = sign_up()
    assert client.get("/readyz").status_code == 200  # due now: the worker has time

    clock.advance(minutes=14)
    assert client.get("/readyz").status_code == 200
    clock.advance(minutes=2)
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["status"] == "unavailable" and body["failed"] == ["outbox"]
    assert body["checks"]["outbox"]["overdue"] == 1
    assert body["checks"]["database"]["ok"] and body["checks"]["migrations"]["ok"]
    text = response.get_data(as_text=True)
    assert EMAIL not in text and "Lovelace" not in text

    # A worker holds the row (a valid lease): it is being sent, not stuck.
    row.locked_until = clock.now + timedelta(minutes=10)
    db.session.commit()
    assert client.get("/readyz").status_code == 200

    # The worker died: its lease ran out long ago and nobody took the row over.
    clock.advance(minutes=30)
    outbox = client.get("/readyz").get_json()["checks"]["outbox"]
    assert outbox["ok"] is False
    assert (outbox["overdue"], outbox["expired_leases"]) == (1, 1)

    row.status, row.locked_until = OutboxStatus.SENT, None
    db.session.commit()
    assert client.get("/readyz").status_code == 200


def test_retries_waiting_for_their_time_are_not_stuck(app, client, clock):
    at_head(app)
    row = sign_up()
    row.attempts, row.next_attempt_at = 3, clock.now + timedelta(hours=1)
    db.session.commit()
    clock.advance(minutes=59)
    assert client.get("/readyz").status_code == 200
    clock.advance(minutes=20)
    assert client.get("/readyz").status_code == 503


def test_the_stuck_limit_is_a_setting(app, client, clock):
    at_head(app)
    sign_up()
    app.config["OUTBOX_STUCK_MINUTES"] = 60
    clock.advance(minutes=45)
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json()["checks"]["outbox"]["stuck_after_minutes"] == 60
    clock.advance(minutes=20)
    assert client.get("/readyz").status_code == 503


@contextmanager
def empty_database(kind: str, tmp_path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'older.sqlite'}"
    else:
        skip_or_fail_without_postgres()
        with temporary_postgres_database("registration_readyz") as url:
            yield url


@pytest.mark.parametrize(
    "kind", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)]
)
def test_a_database_behind_the_code_is_not_ready_until_upgraded(kind, tmp_path, monkeypatch):
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path))
    with empty_database(kind, tmp_path) as url:
        app = create_app("testing", SQLALCHEMY_DATABASE_URI=url)
        script = ScriptDirectory(str(app.config["MIGRATIONS_DIR"]))
        head = script.get_current_head()
        previous = script.get_revision(head).down_revision
        client = app.test_client()
        with app.app_context():
            try:
                # No schema at all: the database answers, but nothing is migrated.
                response = client.get("/readyz")
                assert response.status_code == 503
                assert response.get_json()["checks"]["migrations"]["current"] == []

                upgrade(revision=previous)
                response = client.get("/readyz")
                assert response.status_code == 503
                body = response.get_json()
                assert "migrations" in body["failed"]
                assert body["checks"]["database"] == {"ok": True}
                assert body["checks"]["migrations"] == {
                    "ok": False,
                    "current": [previous],
                    "head": [head],
                }

                upgrade()
                response = client.get("/readyz")
                assert response.status_code == 200, response.get_json()
            finally:
                db.engine.dispose()


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:////nonexistent/dir/registration.sqlite",
        pytest.param(
            "postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=2",
            id="postgresql-refused",
        ),
    ],
)
def test_an_unreachable_database_is_reported_without_details(url, tmp_path, monkeypatch):
    monkeypatch.setenv("INSTANCE_PATH", str(tmp_path))
    app = create_app("testing", SQLALCHEMY_DATABASE_URI=url)
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["failed"] == ["database"]
    assert body["checks"] == {"database": {"ok": False, "error": "unreachable"}}
    assert "127.0.0.1" not in response.get_data(as_text=True)
    assert "nonexistent" not in response.get_data(as_text=True)
