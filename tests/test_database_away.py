"""When PostgreSQL drops a connection mid-request (a restart, a kill), the answer is a calm 503
with Retry-After, JSON on the API, and the next request works again."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from registration.extensions import db
from registration.services import api_tokens

from .conftest import make_event, postgresql_only
from .test_admin import login, make_organiser


@pytest.fixture
def world(app, database_url):
    me = make_organiser("ich@example.org")
    event = make_event(slug="werkstatt")
    event.organisers.append(me)
    _token, secret = api_tokens.create(me, "Skript")
    db.session.commit()
    return {"event_id": event.id, "secret": secret, "url": database_url}


@contextmanager
def killed_while_waiting_for_the_event(url: str, event_id: int) -> Iterator[Callable[[], None]]:
    """Hold the event row; the request started in the block waits for it; ``kill()`` ends the
    waiting request's database session from outside, as a restart or an operator would."""
    engine = create_engine(url)
    with engine.connect() as conn:
        conn.execute(text("SELECT id FROM events WHERE id = :id FOR UPDATE"), {"id": event_id})

        def kill() -> None:
            for _ in range(3000):
                conn.execute(text("SELECT pg_stat_clear_snapshot()"))
                pids = (
                    conn.execute(
                        text(
                            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                            "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
                        )
                    )
                    .scalars()
                    .all()
                )
                if pids:
                    for pid in pids:
                        conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
                    return
                threading.Event().wait(0.01)
            raise AssertionError("the request never waited for the event row")

        yield kill
        conn.rollback()
    engine.dispose()


def in_thread(app, call: Callable[[Any], Any]) -> tuple[threading.Thread, list[Any]]:
    answers: list[Any] = []

    def run() -> None:
        with app.app_context():
            answers.append(call(app.test_client()))
            db.session.remove()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, answers


@postgresql_only
def test_the_api_answers_503_json_with_retry_after(app, world):
    headers = {"Authorization": f"Bearer {world['secret']}"}
    with killed_while_waiting_for_the_event(world["url"], world["event_id"]) as kill:
        thread, answers = in_thread(
            app,
            lambda c: c.patch("/api/v1/events/werkstatt", json={"title": "Neu"}, headers=headers),
        )
        kill()
        thread.join(30)
    (response,) = answers
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.json["error"] == "unavailable"
    # The pool replaced the dead connection: the next request works.
    again = app.test_client().patch(
        "/api/v1/events/werkstatt", json={"title": "Neu"}, headers=headers
    )
    assert again.status_code == 200 and again.json["title"] == "Neu"


@postgresql_only
def test_a_page_answers_503_calmly(app, world):
    def save(client: Any) -> Any:
        login(client, "ich@example.org")
        page = client.get("/admin/events/werkstatt/edit")
        assert page.status_code == 200
        return client.post(
            "/admin/events/werkstatt/edit",
            data={"title": "Neu", "format": "on_site", "status": "published",
                  "starts_at": "2030-12-11T11:00", "ends_at": "2030-12-11T16:00",
                  "reminder_days_before": "2", "dial_in_hours_before": "24"},
            headers={"Accept-Language": "de"},
        )  # fmt: skip

    with killed_while_waiting_for_the_event(world["url"], world["event_id"]) as kill:
        thread, answers = in_thread(app, save)
        kill()
        thread.join(30)
    (response,) = answers
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert "Kurz nicht erreichbar" in response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("message", "unavailable"),
    [
        ("database is locked", True),
        ("unable to open database file", True),
        ('near "ON": syntax error', False),
        ("no such table: outbox", False),
    ],
)
def test_only_a_busy_or_missing_sqlite_database_counts_as_unavailable(message, unavailable):
    """SQLite reports a wrong statement as OperationalError too: that stays a 500 (a bug to
    fix), while a busy database is a 503 (try again)."""
    import sqlite3

    from sqlalchemy.exc import OperationalError

    from registration.errors import _is_unavailable

    error = OperationalError("SELECT 1", {}, sqlite3.OperationalError(message))
    assert _is_unavailable(error) is unavailable
