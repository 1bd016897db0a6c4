"""A sign-up whose answer was lost can be sent again: with an Idempotency-Key it gets the first
answer; without one, the address's registration is named and its link mailed once more."""

from __future__ import annotations

import threading
import uuid

import pytest
from sqlalchemy import func, select

from registration.extensions import db
from registration.models import AuditEntry, OutboxMessage, Registration

from .conftest import make_event
from .openapi_check import watch_responses

URL = "/api/v1/events/werkstatt/registrations"


@pytest.fixture(autouse=True)
def _responses_match_the_openapi_document(app):
    yield from watch_responses(app)


def body(n: int = 1, **overrides: object) -> dict[str, object]:
    values: dict[str, object] = {
        "email": f"person{n}@example.org", "first_name": "Jürgen", "last_name": f"Weiß{n}",
        "privacy_consent": True,
    }  # fmt: skip
    values.update(overrides)
    return values


def registrations() -> int:
    count = db.session.scalar(select(func.count()).select_from(Registration))
    db.session.rollback()
    return count


def mails(kind: str) -> list[OutboxMessage]:
    rows = db.session.scalars(select(OutboxMessage).where(OutboxMessage.kind == kind)).all()
    db.session.rollback()
    return list(rows)


def test_the_same_key_and_body_get_the_first_answer(client, app):
    make_event(capacity_on_site=1)
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = client.post(URL, json=body(), headers=key)
    assert first.status_code == 201
    again = client.post(URL, json=body(), headers=key)
    assert again.status_code == 201 and again.json == first.json
    assert registrations() == 1 and len(mails("confirmation")) == 1
    # The same key with another body is a mistake of the client.
    other = client.post(URL, json=body(2), headers=key)
    assert other.status_code == 422 and list(other.json["errors"]) == ["Idempotency-Key"]
    assert registrations() == 1
    # Another key is another sign-up (here: the waiting list).
    second = client.post(URL, json=body(3), headers={"Idempotency-Key": "zweiter-versuch"})
    assert second.status_code == 201 and second.json["status"] == "waitlisted"


@pytest.mark.parametrize("key", ["", "x" * 101, "mit leerzeichen", "ümlaut"])
def test_a_malformed_key_is_422(client, app, key):
    make_event()
    response = client.post(URL, json=body(), headers={"Idempotency-Key": key})
    assert response.status_code == 422 and list(response.json["errors"]) == ["Idempotency-Key"]
    assert registrations() == 0


def test_a_key_names_its_sign_up_for_24_hours(client, app, clock):
    from registration.timeutil import utcnow

    clock.now = utcnow()
    make_event()
    key = {"Idempotency-Key": "jeden-tag-gleich"}
    assert client.post(URL, json=body(), headers=key).status_code == 201
    clock.advance(hours=25)
    later = client.post(URL, json=body(2), headers=key)
    assert later.status_code == 201 and registrations() == 2
    assert db.session.scalars(select(Registration.idempotency_key)).all().count(
        "jeden-tag-gleich"
    ) == 1  # fmt: skip


def test_the_same_request_twice_at_once_signs_up_once(app):
    make_event(capacity_on_site=5)
    key = {"Idempotency-Key": str(uuid.uuid4())}
    barrier = threading.Barrier(2)
    answers: list[tuple[int, dict]] = []

    def send() -> None:
        with app.app_context():
            client = app.test_client()
            barrier.wait()
            response = client.post(URL, json=body(), headers=key)
            answers.append((response.status_code, response.json))
            db.session.remove()

    threads = [threading.Thread(target=send) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert [status for status, _ in answers] == [201, 201]
    assert answers[0][1] == answers[1][1]
    assert registrations() == 1


def test_a_duplicate_without_a_key_names_the_registration_and_mails_its_link(client, app):
    make_event(capacity_on_site=1)
    assert client.post(URL, json=body(9)).status_code == 201  # takes the seat
    assert client.post(URL, json=body()).status_code == 201  # waiting list
    again = client.post(URL, json=body(email="PERSON1@example.org"))
    assert again.status_code == 409
    assert again.json["error"] == "duplicate"
    assert (again.json["status"], again.json["waitlist_position"]) == ("waitlisted", 1)
    assert "manage_url" not in again.json  # the link goes to the address, not to the asker
    (link,) = mails("manage_link")
    assert link.registration.email == "person1@example.org"
    # Asking again within the hour mails nothing more.
    client.post(URL, json=body())
    assert len(mails("manage_link")) == 1
    assert registrations() == 2


def test_the_form_says_so_too_and_the_mail_carries_the_link(client, app, tmp_path):
    from email import message_from_bytes, policy
    from pathlib import Path

    from registration.worker import run_once

    app.config["MAIL_FILE_DIR"] = str(tmp_path / "mail")
    make_event()
    form = {"first_name": "Jürgen", "last_name": "Weiß", "email": "j@example.org",
            "privacy_consent": "y"}  # fmt: skip
    assert client.post("/events/werkstatt", data=form).status_code == 302
    again = client.post("/events/werkstatt", data=form, headers={"Accept-Language": "de"})
    assert "Wir haben Ihnen den Link zu Ihrer Anmeldung noch einmal" in again.get_data(as_text=True)
    run_once()
    sent = [
        message_from_bytes(p.read_bytes(), policy=policy.default)
        for p in sorted(Path(app.config["MAIL_FILE_DIR"]).glob("*.eml"))
    ]
    (link,) = [m for m in sent if str(m["Subject"]).startswith("Ihre Anmeldung")]
    assert "/manage/" in link.get_body(("plain",)).get_content()


def test_a_participant_cancelling_is_in_the_audit_log(client, app):
    make_event()
    created = client.post(URL, json=body())
    token = created.json["manage_url"].rsplit("/", 1)[-1]
    assert client.post(f"/api/v1/registrations/{token}/cancel").status_code == 200
    entry = db.session.scalars(select(AuditEntry)).one()
    assert (entry.action, entry.actor_id, entry.details["via"]) == (
        "participant.cancel", None, "participant",
    )  # fmt: skip


@pytest.mark.parametrize("smtputf8", [False, True])
def test_an_address_the_mail_server_cannot_take_is_refused_at_the_door(client, app, smtputf8):
    app.config["MAIL_SMTPUTF8"] = smtputf8
    make_event()
    response = client.post(URL, json=body(email="jürgen@example.org"))
    if smtputf8:  # the relay takes internationalised mailboxes
        assert response.status_code == 201
    else:
        assert response.status_code == 422 and list(response.json["errors"]) == ["email"]
        assert registrations() == 0
    # Umlauts in the domain have an ASCII form every server takes.
    assert client.post(URL, json=body(2, email="j@bündnis-wohnen.example")).status_code == 201
    page = client.post(
        "/events/werkstatt",
        data={"first_name": "J", "last_name": "M", "email": "jörg@example.org",
              "privacy_consent": "y"},
        headers={"Accept-Language": "de"},
    )  # fmt: skip
    assert (page.status_code == 302) is smtputf8
    if not smtputf8:
        assert "ohne Umlaute oder Akzente vor dem" in page.get_data(as_text=True)
