"""A transaction stuck while holding an event's lock: the requests behind it give up after the
lock timeout (SIGNUP_LOCK_TIMEOUT) with "busy, try again", not a 500 and not a pile-up."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import func, select

from registration.extensions import db
from registration.models import Event, Registration, RegistrationStatus
from registration.services import signup
from registration.services.errors import Busy

from .conftest import make_event
from .openapi_check import watch_responses
from .test_public import form_data, text_of
from .test_signup_service import data, register

POSTGRESQL_ONLY = pytest.mark.parametrize(
    "database_url", [pytest.param("postgresql", marks=pytest.mark.postgresql)], indirect=True
)

pytestmark = POSTGRESQL_ONLY


@pytest.fixture
def short_timeout(app):
    app.config["SIGNUP_LOCK_TIMEOUT"] = 0.1
    return app


@pytest.fixture(autouse=True)
def _responses_match_the_openapi_document(app):
    yield from watch_responses(app)


@contextmanager
def event_locked_elsewhere(event_id: int) -> Iterator[None]:
    """Another connection holds the event's row lock until the block ends (a stuck
    transaction)."""
    engine = db.engine  # the thread has no app context
    locked, release = threading.Event(), threading.Event()
    failure: list[BaseException] = []

    def holder() -> None:
        try:
            with engine.connect() as conn:
                conn.execute(select(Event.id).where(Event.id == event_id).with_for_update())
                locked.set()
                release.wait(60)  # until the test is done with its requests
                conn.rollback()
        except BaseException as exc:  # reported by the test, not lost in the thread
            failure.append(exc)
            locked.set()

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert locked.wait(10) and not failure, failure
        yield
    finally:
        release.set()
        thread.join()
    assert not failure, failure


def registration_count() -> int:
    db.session.rollback()
    return db.session.scalar(select(func.count()).select_from(Registration))


def test_a_sign_up_gives_up_with_busy_and_writes_nothing(short_timeout):
    event = make_event()
    event_id = event.id
    db.session.rollback()
    with event_locked_elsewhere(event_id):
        with pytest.raises(Busy) as raised:
            signup.register(event, data(1), commit=True)
        assert raised.value.code == "busy"
        assert raised.value.retry_after == 1  # 0.1 s rounded up to a whole second
        assert registration_count() == 0
    # The lock is free again: the same sign-up goes through.
    event = db.session.get_one(Event, event_id)
    result = signup.register(event, data(1), commit=True)
    assert result.status == RegistrationStatus.CONFIRMED
    assert registration_count() == 1


def test_the_lock_timeout_ends_the_transaction_only_for_the_lock_wait(short_timeout):
    """A sign-up without contention under the same setting is unaffected (the setting is
    SET LOCAL: it ends with the transaction)."""
    event = make_event()
    register(event, 1)
    register(event, 2)
    db.session.rollback()
    assert db.session.scalar(select(func.current_setting("lock_timeout"))) == "0"


def test_lock_event_gives_up_with_busy(short_timeout):
    event = make_event()
    registration = register(event, 1).registration
    registration_id = registration.id
    with event_locked_elsewhere(event.id), pytest.raises(Busy):
        signup.cancel(registration)
    db.session.rollback()
    assert db.session.get_one(Registration, registration_id).status == "confirmed"


def test_the_api_answers_503_with_retry_after(short_timeout, client):
    event = make_event()
    event_id = event.id
    db.session.rollback()
    with event_locked_elsewhere(event_id):
        response = client.post(
            "/api/v1/events/werkstatt/registrations",
            json={
                "email": "a@example.org",
                "first_name": "Jürgen",
                "last_name": "Weiß",
                "privacy_consent": True,
            },
            headers={"Accept-Language": "en"},
        )
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert response.get_json() == {
        "error": "busy",
        "message": "Many requests are being processed at the moment. Please try again in a moment.",
    }
    assert registration_count() == 0


def test_an_api_cancel_answers_503_too(short_timeout, client):
    """Endpoints without their own handling get the app-wide answer (database.py)."""
    event = make_event()
    result = register(event, 1)
    with event_locked_elsewhere(event.id):
        response = client.post(f"/api/v1/registrations/{result.manage_token}/cancel")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert response.get_json()["error"] == "busy"


def test_the_form_asks_to_try_again_and_keeps_the_values(short_timeout, client):
    event = make_event()
    event_id = event.id
    db.session.rollback()
    with event_locked_elsewhere(event_id):
        response = client.post(
            "/events/werkstatt",
            data=form_data(1),
            headers={"Accept-Language": "de-DE,de;q=0.9"},
        )
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    page = text_of(response)
    assert "Bitte versuchen Sie es in wenigen Augenblicken erneut." in page
    assert 'value="juergen1@example.org"' in page
    assert registration_count() == 0


def test_the_manage_page_cancel_asks_to_try_again(short_timeout, client):
    event = make_event()
    result = register(event, 1)
    with event_locked_elsewhere(event.id):
        response = client.post(f"/manage/{result.manage_token}/cancel")
    assert response.status_code == 302
    page = text_of(client.get(response.headers["Location"]))
    assert "wenigen Augenblicken" in page or "try again in a moment" in page
    db.session.rollback()
    assert db.session.get_one(Registration, result.registration_id).status == "confirmed"
