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
        "failing": 0,
        "failed_recently": 0,
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


def test_a_retry_waiting_for_its_time_is_not_stuck_until_it_fails_for_too_long(app, client, clock):
    at_head(app)
    row = sign_up()
    row.attempts, row.next_attempt_at = 3, clock.now + timedelta(hours=1)
    db.session.commit()
    clock.advance(minutes=14)
    assert client.get("/readyz").status_code == 200
    clock.advance(minutes=2)  # failing since it was written, 16 minutes ago: not only after 1 h
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["checks"]["outbox"]["failing"] == 1
    assert response.get_json()["checks"]["outbox"]["overdue"] == 0


def test_a_relay_that_always_says_later_is_reported_within_the_limit_of_the_first_failure(
    app, client, clock
):
    """The worker keeps trying (1, 2, 4, 8 minutes apart), so the mail is never overdue; the
    check must still report it once it has been failing for ``OUTBOX_STUCK_MINUTES``."""
    from registration.services import delivery

    from .smtp import SMTPServer

    at_head(app)
    server = SMTPServer(on_data=lambda n, message: "451 4.3.0 Try again later")
    server.start()
    app.config.update(MAIL_SERVER="127.0.0.1", MAIL_PORT=server.port, MAIL_TIMEOUT=5)
    try:
        row = sign_up()
        first_failure = clock.now
        while clock.now <= first_failure + timedelta(minutes=15):
            delivery.send_due()  # as the worker does every few seconds
            if clock.now < first_failure + timedelta(minutes=15):
                assert client.get("/readyz").status_code == 200, clock.now
            clock.advance(seconds=5)
        db.session.refresh(row)
        assert row.status == OutboxStatus.PENDING and row.attempts == 5  # 0, 1, 3, 7, 15 min
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.get_json()["checks"]["outbox"]["failing"] == 1
    finally:
        server.stop()
    assert server.messages == []


def test_mail_that_failed_for_good_is_counted_but_keeps_the_service_ready(app, client, clock):
    at_head(app)
    row = sign_up()
    row.status, row.attempts, row.last_error = OutboxStatus.FAILED, 1, "550 no such mailbox"
    db.session.commit()
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json()["checks"]["outbox"]["failed_recently"] == 1


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
