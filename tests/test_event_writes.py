"""One write path for events: the back office, the API and the CLI import change events through
the same service, with the same validation, notifications, audit entries and calendar SEQUENCE."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from icalendar import Calendar
from sqlalchemy import select

from registration.extensions import db
from registration.models import (
    AuditEntry,
    Event,
    EventFile,
    EventStatus,
    FileKind,
    OutboxMessage,
    Question,
    QuestionKind,
    Registration,
)
from registration.services import api_tokens, events, signup
from registration.worker import run_once

from .conftest import make_event, postgresql_only
from .test_admin import login, make_organiser

#: 11:00 local time (CET) on a Wednesday, far enough ahead for every rule.
START = datetime(2030, 12, 11, 10, 0, tzinfo=UTC)
TITLE_IMAGE = resources.files("registration").joinpath("demo/fachtagung-titelbild.jpg")
FLYER = resources.files("registration").joinpath("demo/save-the-date-fachtagung.pdf")


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def sign_up(event: Event, n: int) -> Registration:
    result = signup.register(
        event,
        signup.SignupData(
            email=f"person{n}@example.org", first_name=f"Vor{n}", last_name=f"Nach{n}",
            privacy_consent=True,
        ),
    )  # fmt: skip
    db.session.commit()
    return result.registration


@pytest.fixture
def office(app, tmp_path):
    """An organiser with a token and three identical events (one per entry point), each with
    one confirmed and one waiting participant; mail goes to files."""
    app.config["MAIL_FILE_DIR"] = str(tmp_path / "mail")
    me = make_organiser("ich@example.org")
    made = {}
    for slug in ("per-formular", "per-api", "per-cli"):
        event = make_event(
            slug=slug, title="Werkstatt", starts_at=START, ends_at=START + timedelta(hours=5),
            venue_name="Rathaus", venue_address="Markt 1\n04916 Herzberg", capacity_on_site=1,
        )  # fmt: skip
        event.organisers.append(me)
        db.session.commit()
        sign_up(event, 1)
        sign_up(event, 2)  # waiting list
        made[slug] = event
    run_once()  # the confirmations are out of the way
    _token, secret = api_tokens.create(me, "Skript")
    db.session.commit()
    return {"me": me, "secret": secret, **made}


def form_of(event: Event, **overrides: str) -> dict[str, str]:
    """The back office's event form as the browser sends it for ``event``, with changes."""
    local = event.zone
    values = {
        "title": event.title, "format": str(event.format), "status": str(event.status),
        "starts_at": event.starts_at.astimezone(local).strftime("%Y-%m-%dT%H:%M"),
        "ends_at": event.ends_at.astimezone(local).strftime("%Y-%m-%dT%H:%M"),
        "venue_name": event.venue_name, "venue_address": event.venue_address,
        "capacity_on_site": str(event.capacity_on_site or ""),
        "waitlist_enabled": "y" if event.waitlist_enabled else "",
        "reminder_days_before": str(event.reminder_days_before),
        "dial_in_hours_before": str(event.dial_in_hours_before),
        "retention_days": str(event.retention_days), "notify": "y",
    }  # fmt: skip
    values.update(overrides)
    return {k: v for k, v in values.items() if v}


def import_file(tmp_path: Path, *records: dict[str, Any]) -> str:
    path = tmp_path / "events.json"
    path.write_text(json.dumps({"events": list(records)}), encoding="utf-8")
    return str(path)


def outcome(event: Event) -> dict[str, Any]:
    """What a change left behind, without what differs by entry point (ids, via, tokens)."""
    db.session.expire_all()
    rows = db.session.scalars(
        select(OutboxMessage)
        .where(OutboxMessage.event_id == event.id, OutboxMessage.kind != "confirmation")
        .where(OutboxMessage.kind != "waitlisted")
        .order_by(OutboxMessage.id)
    ).all()
    entries = db.session.scalars(
        select(AuditEntry)
        .where(AuditEntry.event_id == event.id, AuditEntry.action.like("event.%"))
        .order_by(AuditEntry.id)
    ).all()
    return {
        "outbox": [
            (row.kind, row.registration.email, row.payload, row.dedupe_key.split(":")[-1])
            for row in rows
        ],
        "audit": [
            (e.action, {k: v for k, v in (e.details or {}).items() if k not in ("via", "token")})
            for e in entries
        ],
        "sequence": db.session.get(Event, event.id).ics_sequence,
    }


def sent_calendars(mail_dir: Path, subject_start: str, *, other: bool = False) -> list[Calendar]:
    """The calendar entries of the mails whose subject starts so (``other``: does not)."""
    found = []
    for path in sorted(mail_dir.glob("*.eml")):
        message = message_from_bytes(path.read_bytes(), policy=policy.default)
        if str(message["Subject"]).startswith(subject_start) == other:
            continue
        for part in message.walk():
            if part.get_content_type() == "text/calendar":
                found.append(Calendar.from_ical(part.get_payload(decode=True)))
    return found


def test_the_same_change_has_the_same_effects_from_every_entry_point(
    app, client, runner, office, tmp_path
):
    later = {"starts_at": "2030-12-11T12:00:00+01:00", "ends_at": "2030-12-11T17:00:00+01:00"}
    login(client, "ich@example.org")
    response = client.post(
        "/admin/events/per-formular/edit",
        data=form_of(office["per-formular"], starts_at="2030-12-11T12:00",
                     ends_at="2030-12-11T17:00"),
    )  # fmt: skip
    assert response.status_code == 302, response.get_data(as_text=True)
    response = client.patch("/api/v1/events/per-api", json=later, headers=bearer(office["secret"]))
    assert response.status_code == 200, response.json
    result = runner.invoke(
        args=["events", "import", import_file(tmp_path, {"slug": "per-cli", **later})]
    )
    assert result.exit_code == 0, result.output

    results = {slug: outcome(office[slug]) for slug in ("per-formular", "per-api", "per-cli")}
    expected = results["per-formular"]
    assert results["per-api"] == expected and results["per-cli"] == expected
    # Both active participants are told, with what changed; the calendar entry moves once.
    assert [(kind, email) for kind, email, _p, _k in expected["outbox"]] == [
        ("event_changed", "person1@example.org"),
        ("event_changed", "person2@example.org"),
    ]
    assert expected["outbox"][0][2]["changes"] == [
        {"field": "starts_at", "old": "2030-12-11T10:00:00+00:00", "new": "2030-12-11T12:00:00+01:00"},
        {"field": "ends_at", "old": "2030-12-11T15:00:00+00:00", "new": "2030-12-11T17:00:00+01:00"},
    ]  # fmt: skip
    assert expected["audit"] == [
        ("event.update", {"fields": ["ends_at", "starts_at"], "notified": 2})
    ]
    assert expected["sequence"] == 1

    run_once()
    mail_dir = Path(app.config["MAIL_FILE_DIR"])
    changed = [
        message_from_bytes(p.read_bytes(), policy=policy.default)
        for p in sorted(mail_dir.glob("*.eml"))
    ]
    changed = [m for m in changed if str(m["Subject"]).startswith("Änderungen")]
    assert len(changed) == 6
    text = changed[0].get_body(("plain",)).get_content()
    assert "Beginn – neu: 12:00 Uhr statt 11:00 Uhr" in text
    assert "Ende – neu: 17:00 Uhr statt 16:00 Uhr" in text
    calendars = sent_calendars(mail_dir, "Änderungen")
    assert {int(c.walk("VEVENT")[0]["SEQUENCE"]) for c in calendars} == {1}
    # Confirmed participants get the entry again with the confirmation's UID, so calendars
    # move it instead of adding one; those waiting have no entry and get none.
    first = sent_calendars(mail_dir, "Änderungen", other=True)  # the confirmations
    assert len(first) == 3
    uids = {str(c.walk("VEVENT")[0]["UID"]) for c in first}
    assert {str(c.walk("VEVENT")[0]["UID"]) for c in calendars} <= uids
    assert {int(c.walk("VEVENT")[0]["SEQUENCE"]) for c in first} == {0}


def test_opting_out_is_explicit_at_every_entry_point(app, client, runner, office, tmp_path):
    login(client, "ich@example.org")
    form = form_of(office["per-formular"], venue_name="Bürgerhaus")
    del form["notify"]  # the box unticked
    assert client.post("/admin/events/per-formular/edit", data=form).status_code == 302
    response = client.patch(
        "/api/v1/events/per-api",
        json={"venue": {"name": "Bürgerhaus"}, "notify": False},
        headers=bearer(office["secret"]),
    )
    assert response.status_code == 200, response.json
    result = runner.invoke(
        args=[
            "events", "import", "--no-notify",
            import_file(tmp_path, {"slug": "per-cli", "venue": {"name": "Bürgerhaus"}}),
        ]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    for slug in ("per-formular", "per-api", "per-cli"):
        result = outcome(office[slug])
        assert result["outbox"] == []
        assert result["audit"] == [("event.update", {"fields": ["venue_name"], "notified": 0})]
        assert result["sequence"] == 1
        assert db.session.get(Event, office[slug].id).venue_address == "Markt 1\n04916 Herzberg"


def test_the_edit_form_ticks_the_box_when_people_are_registered(client, office):
    login(client, "ich@example.org")
    page = client.get("/admin/events/per-formular/edit").get_data(as_text=True)
    assert re.search(r'<input checked id="notify"', page)
    empty = make_event(slug="leer")
    empty.organisers.append(office["me"])
    db.session.commit()
    page = client.get("/admin/events/leer/edit").get_data(as_text=True)
    assert re.search(r'<input id="notify"', page)


@pytest.mark.parametrize("notify", [True, False])
def test_cancelling_through_the_api_is_a_cancellation(client, office, notify):
    body: dict[str, Any] = {"status": "cancelled"}
    if not notify:
        body["notify"] = False
    response = client.patch("/api/v1/events/per-api", json=body, headers=bearer(office["secret"]))
    assert response.status_code == 200, response.json
    assert response.json["status"] == "cancelled"
    result = outcome(office["per-api"])
    told = 2 if notify else 0
    assert [kind for kind, *_ in result["outbox"]] == ["event_cancelled"] * told
    assert result["audit"] == [("event.cancel", {"notified": told})]
    assert result["sequence"] == 1
    # Cancelling again changes nothing and tells nobody twice.
    client.patch("/api/v1/events/per-api", json=body, headers=bearer(office["secret"]))
    assert outcome(office["per-api"]) == result


@pytest.mark.parametrize("notify", [True, False])
def test_cancelling_on_the_command_line(runner, office, notify):
    args = ["events", "cancel", "per-cli"] + ([] if notify else ["--no-notify"])
    result = runner.invoke(args=args)
    assert result.exit_code == 0, result.output
    told = 2 if notify else 0
    assert f"cancelled: per-cli ({told} participants told)" in result.output
    outcome_now = outcome(office["per-cli"])
    assert [kind for kind, *_ in outcome_now["outbox"]] == ["event_cancelled"] * told
    assert outcome_now["audit"] == [("event.cancel", {"notified": told})]
    again = runner.invoke(args=["events", "cancel", "per-cli"])
    assert "was cancelled already" in again.output
    assert outcome(office["per-cli"]) == outcome_now
    assert runner.invoke(args=["events", "cancel", "gibt-es-nicht"]).exit_code != 0


def test_cancelling_through_the_import_tells_the_participants(runner, office, tmp_path):
    record = {"slug": "per-cli", "status": "cancelled"}
    result = runner.invoke(args=["events", "import", import_file(tmp_path, record)])
    assert result.exit_code == 0, result.output
    assert [kind for kind, *_ in outcome(office["per-cli"])["outbox"]] == ["event_cancelled"] * 2


def test_an_update_changes_only_what_it_names(runner, office, tmp_path):
    event = office["per-cli"]
    event.description = "Programm"
    event.contact_email = "orga@example.org"
    db.session.commit()
    record = {"slug": "per-cli", "capacity": {"on_site": 5}}
    result = runner.invoke(args=["events", "import", import_file(tmp_path, record)])
    assert result.exit_code == 0, result.output
    db.session.expire_all()
    event = db.session.get(Event, event.id)
    assert (event.capacity_on_site, event.description, event.contact_email) == (
        5, "Programm", "orga@example.org",
    )  # fmt: skip
    assert event.venue_name == "Rathaus" and event.status == EventStatus.PUBLISHED
    # The raised capacity promoted the waiting person, in the same transaction.
    assert sorted(r.status for r in event.registrations) == ["confirmed", "confirmed"]


def with_title_image(event: Event) -> Event:
    events.add_file(
        event, FileKind.TITLE_IMAGE, TITLE_IMAGE.read_bytes(), "titel.jpg", actor=None,
        alt="Blick auf den Marktplatz", credit="Foto: Stadt Herzberg",
    )  # fmt: skip
    events.add_file(
        event, FileKind.ATTACHMENT, FLYER.read_bytes(), "flyer.pdf", actor=None,
        title="Save-the-Date",
    )  # fmt: skip
    event.questions.append(
        Question(key="lunch", label="Mittagessen?", kind=QuestionKind.YES_NO, position=0)
    )
    db.session.commit()
    return event


def test_saving_the_form_unchanged_keeps_alt_text_credit_questions_and_files(client, office):
    event = with_title_image(office["per-formular"])
    login(client, "ich@example.org")
    page = client.get("/admin/events/per-formular/edit").get_data(as_text=True)
    assert 'value="Werkstatt"' in page
    response = client.post("/admin/events/per-formular/edit", data=form_of(event))
    assert response.status_code == 302
    db.session.expire_all()
    event = db.session.get(Event, event.id)
    assert (event.title_image_alt, event.title_image_credit) == (
        "Blick auf den Marktplatz", "Foto: Stadt Herzberg",
    )  # fmt: skip
    assert [q.key for q in event.questions] == ["lunch"]
    assert sorted(f.kind for f in event.files) == ["attachment", "title_image"]
    # Nothing changed, so nothing is logged and nobody told.
    assert [a for a, _details in outcome(event)["audit"] if a == "event.update"] == []
    assert event.ics_sequence == 0


def test_duplicating_copies_questions_title_image_documents_and_times(app, client, office):
    original = with_title_image(office["per-formular"])
    login(client, "ich@example.org")
    page = client.get("/admin/events/new", query_string={"copy": "per-formular"})
    text = page.get_data(as_text=True)
    assert 'value="per-formular-kopie"' in text
    assert re.search(r'id="starts_at"[^>]*value="2030-12-11T11:00"', text)
    assert "Fragen des Anmeldeformulars" in text  # the page says what comes along
    form = form_of(original, slug="per-formular-kopie", status="draft")
    del form["notify"]
    response = client.post("/admin/events/new", query_string={"copy": "per-formular"}, data=form)
    assert response.status_code == 302, response.get_data(as_text=True)
    copy = db.session.scalars(select(Event).where(Event.slug == "per-formular-kopie")).one()
    assert (copy.starts_at, copy.ends_at) == (original.starts_at, original.ends_at)
    assert [(q.key, q.label, q.kind) for q in copy.questions] == [
        ("lunch", "Mittagessen?", "yes_no")
    ]
    assert (copy.title_image_alt, copy.title_image_credit) == (
        "Blick auf den Marktplatz", "Foto: Stadt Herzberg",
    )  # fmt: skip
    assert [(f.kind, f.title, f.size) for f in copy.files] == [
        (f.kind, f.title, f.size) for f in original.files
    ]
    # Each event has its own bytes: removing the copy's image leaves the original's.
    copied = {f.storage_name for f in copy.files}
    assert not copied & {f.storage_name for f in original.files}
    events.remove_file(copy, copy.title_image, actor=None)
    stored = db.session.scalars(select(EventFile).where(EventFile.event_id == original.id)).all()
    assert all(events.files.path_of(f).exists() for f in stored)
    assert [o.email for o in copy.organisers] == ["ich@example.org"]
    assert copy.registrations == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("title", "Werkstatt\nBcc: opfer@example.org"),
        ("title", "Werkstatt\r\nBcc: opfer@example.org"),
        ("subtitle", "Zeile\x0beins"),
        ("contact", {"name": "Amt\u2028für Wohnen"}),
        ("venue", {"name": "Rathaus\tSaal"}),
        ("dial_in", {"passcode": "12\n34"}),
        ("description", "Text mit \x1b[31m Escape"),
    ],
)
def test_control_characters_are_refused_naming_the_field(
    client, runner, office, tmp_path, field, value
):
    path = field if not isinstance(value, dict) else f"{field}.{next(iter(value))}"
    response = client.patch(
        "/api/v1/events/per-api", json={field: value}, headers=bearer(office["secret"])
    )
    assert response.status_code == 422, response.json
    assert list(response.json["errors"]) == [path]
    created = client.post(
        "/api/v1/events",
        json={"slug": "neu", "title": "Neu", "format": "on_site",
              "starts_at": "2030-12-11T11:00:00+01:00", "ends_at": "2030-12-11T16:00:00+01:00",
              field: value},
        headers=bearer(office["secret"]),
    )  # fmt: skip
    assert created.status_code == 422 and list(created.json["errors"]) == [path]
    result = runner.invoke(
        args=["events", "import", import_file(tmp_path, {"slug": "per-cli", field: value})]
    )
    assert result.exit_code != 0
    assert f"(per-cli): {path}: " in result.output
    db.session.expire_all()
    assert db.session.get(Event, office["per-api"].id).title == "Werkstatt"
    assert outcome(office["per-api"])["audit"] == []


def test_line_breaks_from_a_textarea_are_stored_as_line_feeds(client, office):
    login(client, "ich@example.org")
    form = form_of(
        office["per-formular"], venue_address="Markt 1\r\n04916 Herzberg (Elster)",
        description="Zeile 1\r\nZeile 2\rZeile 3",
    )  # fmt: skip
    assert client.post("/admin/events/per-formular/edit", data=form).status_code == 302
    db.session.expire_all()
    event = db.session.get(Event, office["per-formular"].id)
    assert event.venue_address == "Markt 1\n04916 Herzberg (Elster)"
    assert event.description == "Zeile 1\nZeile 2\nZeile 3"
    page = client.get("/events/per-formular").get_data(as_text=True)
    assert "Markt 1 ," not in page and "\r" not in page


def test_the_back_office_shows_a_refused_line_break_next_to_the_field(client, office):
    login(client, "ich@example.org")
    form = form_of(office["per-formular"], venue_name="Rathaus\r\nBcc: x@example.org")
    response = client.post(
        "/admin/events/per-formular/edit", data=form, headers={"Accept-Language": "de"}
    )
    assert response.status_code == 422
    error = re.search(
        r'<p class="field-error" id="venue_name-error">(.*?)</p>',
        response.get_data(as_text=True),
        re.S,
    )
    assert error and "eine Zeile" in error.group(1)


def test_answered_questions_keep_kind_and_chosen_options_from_the_api_too(client, office):
    event = office["per-api"]
    event.questions.append(
        Question(key="walk", label="Stadtspaziergang?", kind=QuestionKind.SINGLE_CHOICE,
                 options=["ja", "nein"], position=0)
    )  # fmt: skip
    db.session.commit()
    signup.register(
        event,
        signup.SignupData(email="walker@example.org", first_name="W", last_name="K",
                          privacy_consent=True, answers={"walk": "ja"}),
    )  # fmt: skip
    db.session.commit()
    headers = bearer(office["secret"])
    as_text = {"questions": [{"key": "walk", "label": "Spaziergang?", "kind": "text"}]}
    response = client.patch("/api/v1/events/per-api", json=as_text, headers=headers)
    assert response.status_code == 422 and list(response.json["errors"]) == ["questions[0].kind"]
    renamed = {"questions": [{"key": "walk", "label": "Spaziergang?", "kind": "single_choice",
                              "options": ["gern", "nein"]}]}  # fmt: skip
    response = client.patch("/api/v1/events/per-api", json=renamed, headers=headers)
    assert response.status_code == 422
    assert list(response.json["errors"]) == ["questions[0].options"]
    assert "„ja“" in response.json["errors"]["questions[0].options"][0]
    # Options nobody chose can go; the label can change.
    fine = {"questions": [{"key": "walk", "label": "Spaziergang?", "kind": "single_choice",
                           "options": ["ja", "vielleicht"]}]}  # fmt: skip
    response = client.patch("/api/v1/events/per-api", json=fine, headers=headers)
    assert response.status_code == 200, response.json
    db.session.expire_all()
    (question,) = db.session.get(Event, event.id).questions
    assert (question.label, question.options) == ("Spaziergang?", ["ja", "vielleicht"])


def test_if_match_refuses_a_stale_version_with_412(client, office):
    headers = bearer(office["secret"])
    first = client.get("/api/v1/events/per-api")
    tag = first.headers["ETag"]
    changed = client.patch(
        "/api/v1/events/per-api", json={"title": "Neu"}, headers={**headers, "If-Match": tag}
    )
    assert changed.status_code == 200 and changed.headers["ETag"] != tag
    stale = client.patch(
        "/api/v1/events/per-api", json={"subtitle": "Alt"}, headers={**headers, "If-Match": tag}
    )
    assert stale.status_code == 412 and stale.json["error"] == "stale"
    db.session.expire_all()
    assert db.session.get(Event, office["per-api"].id).subtitle == ""
    fresh = client.patch(
        "/api/v1/events/per-api",
        json={"subtitle": "Neu"},
        headers={**headers, "If-Match": changed.headers["ETag"]},
    )
    assert fresh.status_code == 200
    anything = client.patch(
        "/api/v1/events/per-api", json={"subtitle": "X"}, headers={**headers, "If-Match": "*"}
    )
    assert anything.status_code == 200
    bogus = client.patch(
        "/api/v1/events/per-api", json={"subtitle": "Y"}, headers={**headers, "If-Match": '"x"'}
    )
    assert bogus.status_code == 412


def test_the_back_office_refuses_to_save_over_a_newer_version_once(client, office):
    login(client, "ich@example.org")
    page = client.get("/admin/events/per-formular/edit").get_data(as_text=True)
    version = re.search(r'id="version" name="version" type="hidden" value="(\d+)"', page).group(1)
    # Meanwhile somebody else changes the series line through the API.
    meanwhile = client.patch(
        "/api/v1/events/per-formular", json={"subtitle": "Von der API"},
        headers=bearer(office["secret"]),
    )  # fmt: skip
    assert meanwhile.status_code == 200, meanwhile.json
    form = {**form_of(office["per-formular"], title="Mein Titel"), "version": version}
    response = client.post(
        "/admin/events/per-formular/edit", data=form, headers={"Accept-Language": "de"}
    )
    text = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "Diese Veranstaltung wurde inzwischen von jemand anderem geändert" in text
    db.session.expire_all()
    event = db.session.get(Event, office["per-formular"].id)
    assert (event.title, event.subtitle) == ("Werkstatt", "Von der API")
    newer = re.search(r'id="version" name="version" type="hidden" value="(\d+)"', text).group(1)
    assert int(newer) == event.version
    # Saving again, knowingly, overwrites.
    response = client.post("/admin/events/per-formular/edit", data={**form, "version": newer})
    assert response.status_code == 302
    db.session.expire_all()
    event = db.session.get(Event, office["per-formular"].id)
    assert (event.title, event.subtitle) == ("Mein Titel", "")


@postgresql_only  # another connection's row lock
def test_two_patches_at_the_same_moment_both_count(app, office, database_url):
    """Both requests wait for the event row, held by a third connection; when it lets go, each
    change lands on the locked row, so neither overwrites the other."""
    import threading

    from sqlalchemy import create_engine, text

    event_id = office["per-api"].id
    holder = create_engine(database_url)
    results: list[int] = []

    def patch(body: dict[str, Any]) -> None:
        with app.app_context():
            response = app.test_client().patch(
                "/api/v1/events/per-api", json=body, headers=bearer(office["secret"])
            )
            results.append(response.status_code)
            db.session.remove()

    threads = [
        threading.Thread(target=patch, args=({"capacity": {"on_site": 2}},)),
        threading.Thread(target=patch, args=({"title": "Neuer Titel"},)),
    ]
    with holder.connect() as conn:
        conn.execute(text("SELECT id FROM events WHERE id = :id FOR UPDATE"), {"id": event_id})
        for thread in threads:
            thread.start()
        # Until both requests wait for the row lock (a condition, not a guess about time).
        waiting = 0
        for _ in range(2000):
            # Statistics are a snapshot per transaction: take a new one each time.
            conn.execute(text("SELECT pg_stat_clear_snapshot()"))
            waiting = conn.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
                )
            ).scalar_one()
            if waiting >= 2:
                break
            threading.Event().wait(0.01)
        assert waiting >= 2
        conn.rollback()  # let go
    for thread in threads:
        thread.join(30)
    holder.dispose()
    assert results == [200, 200]
    db.session.expire_all()
    event = db.session.get(Event, event_id)
    assert (event.capacity_on_site, event.title) == (2, "Neuer Titel")


def test_a_contact_address_the_mail_server_cannot_take_is_refused(client, office, app):
    headers = bearer(office["secret"])
    body = {"contact": {"email": "jörg@example.org"}}
    response = client.patch("/api/v1/events/per-api", json=body, headers=headers)
    assert response.status_code == 422 and list(response.json["errors"]) == ["contact.email"]
    # A domain with umlauts has an ASCII form every server takes.
    body = {"contact": {"email": "orga@bündnis-wohnen.example"}}
    assert client.patch("/api/v1/events/per-api", json=body, headers=headers).status_code == 200
    app.config["MAIL_SMTPUTF8"] = True  # the relay is known to take internationalised mailboxes
    body = {"contact": {"email": "jörg@example.org"}}
    assert client.patch("/api/v1/events/per-api", json=body, headers=headers).status_code == 200


def test_importing_the_same_record_again_changes_nothing(runner, office, tmp_path):
    record = {
        "slug": "per-cli", "title": "Werkstatt",
        "questions": [{"key": "lunch", "label": "Mittagessen?", "kind": "yes_no"}],
        "attachments": [{"file": "flyer.pdf", "title": "Flyer"}],
    }  # fmt: skip
    (tmp_path / "flyer.pdf").write_bytes(FLYER.read_bytes())
    path = import_file(tmp_path, record)
    assert runner.invoke(args=["events", "import", path]).exit_code == 0
    first = outcome(office["per-cli"])
    assert first["audit"] == [("event.update", {"fields": ["questions", "files"], "notified": 0})]
    version = db.session.get(Event, office["per-cli"].id).version
    assert runner.invoke(args=["events", "import", path]).exit_code == 0
    # Nothing changed: no audit entry, the same version (no form goes stale), no mail.
    assert outcome(office["per-cli"]) == first
    assert db.session.get(Event, office["per-cli"].id).version == version
