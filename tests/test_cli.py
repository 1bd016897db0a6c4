"""The CLI: events import (all or nothing), demo (idempotent), users create."""

from __future__ import annotations

import json
from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select
from werkzeug.security import check_password_hash

from registration.extensions import db
from registration.models import Event, Organiser, Registration, RegistrationStatus
from registration.services import demo, signup
from registration.timeutil import utcnow

from .conftest import make_event


def event_record(slug: str = "werkstatt-21-herzberg", **overrides: object) -> dict:
    record: dict[str, object] = {
        "slug": slug,
        "title": "Mobilität, Wohnen und Arbeiten",
        "subtitle": "21. Werkstatt – Bündnis vor Ort",
        "description": "**Markdown**",
        "format": "on_site",
        "starts_at": "2030-12-09T11:00:00+01:00",
        "ends_at": "2030-12-09T16:30:00+01:00",
        "timezone": "Europe/Berlin",
        "venue": {"name": "Bürgerzentrum", "address": "Markt 1, 04916 Herzberg (Elster)"},
        "contact": {"name": "Geschäftsstelle", "email": "info@example.org", "phone": "030 1234"},
        "capacity": {"on_site": 50, "online": None},
        "waitlist": True,
        "registration_opens_at": None,
        "registration_closes_at": None,
        "status": "published",
        "dial_in": None,
        "reminder_days_before": 2,
        "dial_in_hours_before": 24,
    }
    record.update(overrides)
    return record


def write(tmp_path, document, name="events.json"):
    path = tmp_path / name
    path.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    return str(path)


def events() -> list[Event]:
    return list(db.session.scalars(select(Event).order_by(Event.slug)))


def test_import_creates_events_with_every_field(runner, tmp_path):
    hybrid = event_record(
        "fachtagung",
        format="hybrid",
        capacity={"on_site": 80, "online": None},
        dial_in={"url": "https://meet.example.org/x", "meeting_id": "1", "passcode": "p",
                 "phone": "+49 30 1", "instructions": "Bitte pünktlich"},
        registration_closes_at="2030-12-01T12:00:00+01:00",
        reminder_days_before=3,
        dial_in_hours_before=2,
    )  # fmt: skip
    result = runner.invoke(
        args=["events", "import", write(tmp_path, {"events": [event_record(), hybrid]})]
    )
    assert result.exit_code == 0, result.output
    assert "created: werkstatt-21-herzberg" in result.output
    fachtagung, werkstatt = events()
    assert werkstatt.starts_at == datetime(2030, 12, 9, 10, 0, tzinfo=ZoneInfo("UTC"))
    assert werkstatt.starts_at.astimezone(werkstatt.zone).hour == 11
    assert werkstatt.venue_address == "Markt 1, 04916 Herzberg (Elster)"
    assert werkstatt.capacity_on_site == 50 and werkstatt.capacity_online is None
    assert fachtagung.dial_in_url == "https://meet.example.org/x"
    assert fachtagung.dial_in_instructions == "Bitte pünktlich"
    assert (fachtagung.reminder_days_before, fachtagung.dial_in_hours_before) == (3, 2)
    assert fachtagung.registration_closes_at.isoformat() == "2030-12-01T11:00:00+00:00"


def test_import_uses_the_configured_zone_when_none_is_given(app, runner, tmp_path):
    app.config["TIMEZONE"] = "America/New_York"
    record = event_record(
        starts_at="2030-06-01T10:00:00-04:00", ends_at="2030-06-01T12:00:00-04:00"
    )
    del record["timezone"]
    assert (
        runner.invoke(args=["events", "import", write(tmp_path, {"events": [record]})]).exit_code
        == 0
    )
    assert events()[0].timezone == "America/New_York"


def test_import_updates_by_slug(runner, tmp_path):
    runner.invoke(args=["events", "import", write(tmp_path, {"events": [event_record()]})])
    changed = event_record(title="Neuer Titel", capacity={"on_site": 70, "online": None})
    result = runner.invoke(args=["events", "import", write(tmp_path, {"events": [changed]})])
    assert result.exit_code == 0, result.output
    assert "updated: werkstatt-21-herzberg" in result.output
    (event,) = events()
    assert (event.title, event.capacity_on_site) == ("Neuer Titel", 70)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"slug": "Not A Slug"}, "slug"),
        ({"title": ""}, "title"),
        ({"format": "festival"}, "format"),
        ({"starts_at": "morgen"}, "starts_at"),
        ({"starts_at": "2030-12-09T11:00:00"}, "needs a UTC offset"),
        ({"ends_at": "2030-12-09T10:00:00+01:00"}, "ends_at: must be after starts_at"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"capacity": {"on_site": -1}}, "capacity.on_site"),
        ({"capacity": {"on_site": "50"}}, "capacity.on_site"),
        ({"capacity": {"seats": 5}}, "capacity.seats: is not a known field"),
        ({"waitlist": "yes"}, "waitlist"),
        ({"status": "live"}, "status"),
        ({"contact": {"email": "no-address"}}, "contact.email"),
        ({"dial_in": {"url": "javascript:alert(1)"}}, "dial_in.url"),
        ({"reminder_days_before": 1.5}, "reminder_days_before"),
        ({"colour": "blue"}, "colour: is not a known field"),
    ],
)
def test_invalid_file_is_rejected_whole_naming_event_and_field(
    runner, tmp_path, overrides, expected
):
    good = event_record("good-event")
    bad = {**event_record("bad-event"), **overrides}
    result = runner.invoke(args=["events", "import", write(tmp_path, {"events": [good, bad]})])
    assert result.exit_code != 0
    assert "nothing was imported" in result.output
    assert "events[1]" in result.output
    assert expected in result.output
    assert events() == []  # the valid event was not imported either


@pytest.mark.parametrize(
    "content", ["{not json", json.dumps([1, 2]), json.dumps({"events": "x"}), json.dumps({})]
)
def test_malformed_files_are_rejected(runner, tmp_path, content):
    path = tmp_path / "bad.json"
    path.write_text(content, encoding="utf-8")
    result = runner.invoke(args=["events", "import", str(path)])
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    assert events() == []


def test_duplicate_slugs_in_one_file_are_rejected(runner, tmp_path):
    result = runner.invoke(
        args=["events", "import", write(tmp_path, {"events": [event_record(), event_record()]})]
    )
    assert result.exit_code != 0
    assert "appears more than once" in result.output


def test_import_refuses_capacity_below_confirmed_and_changes_nothing(runner, tmp_path):
    runner.invoke(args=["events", "import", write(tmp_path, {"events": [event_record()]})])
    (event,) = events()
    for n in range(3):
        signup.register(
            event, signup.SignupData(f"p{n}@example.org", "A", "B", privacy_consent=True)
        )
    db.session.commit()
    lowered = event_record(title="Changed", capacity={"on_site": 2, "online": None})
    other = event_record("another-event")
    result = runner.invoke(args=["events", "import", write(tmp_path, {"events": [other, lowered]})])
    assert result.exit_code != 0
    assert "below the 3 participants already confirmed" in result.output
    db.session.expire_all()
    assert [e.slug for e in events()] == ["werkstatt-21-herzberg"]
    assert events()[0].title == "Mobilität, Wohnen und Arbeiten"


def test_import_raising_capacity_promotes_the_waiting_list(runner, tmp_path):
    runner.invoke(
        args=[
            "events",
            "import",
            write(tmp_path, {"events": [event_record(capacity={"on_site": 1})]}),
        ]
    )
    (event,) = events()
    for n in range(3):
        signup.register(
            event, signup.SignupData(f"p{n}@example.org", "A", "B", privacy_consent=True)
        )
    db.session.commit()
    raised = event_record(capacity={"on_site": 2})
    assert (
        runner.invoke(args=["events", "import", write(tmp_path, {"events": [raised]})]).exit_code
        == 0
    )
    db.session.expire_all()
    statuses = db.session.scalars(select(Registration.status).order_by(Registration.id)).all()
    assert statuses == [
        RegistrationStatus.CONFIRMED,
        RegistrationStatus.CONFIRMED,
        RegistrationStatus.WAITLISTED,
    ]


def test_demo_loads_two_open_events_and_is_idempotent(runner):
    first = runner.invoke(args=["demo"])
    assert first.exit_code == 0, first.output
    second = runner.invoke(args=["demo"])
    assert second.exit_code == 0, second.output
    assert "updated" in second.output
    loaded = events()
    assert len(loaded) == 2
    formats = {e.format for e in loaded}
    assert formats == {"on_site", "hybrid"}
    for event in loaded:
        assert event.is_open
        assert event.starts_at > utcnow()
        assert event.description and event.contact_email and event.venue_name
    hybrid = next(e for e in loaded if e.format == "hybrid")
    assert hybrid.has_dial_in
    werkstatt = next(e for e in loaded if e.format == "on_site")
    local = werkstatt.starts_at.astimezone(werkstatt.zone)
    assert (local.hour, local.minute) == (11, 0)
    assert werkstatt.ends_at.astimezone(werkstatt.zone).strftime("%H:%M") == "16:30"


@pytest.mark.parametrize(
    "today", [date(2026, 11, 21), date(2027, 3, 20), date(2031, 10, 20), date(2024, 1, 1)]
)
def test_demo_dates_are_always_ahead_at_the_same_local_time(today):
    document = demo.demo_document(today)
    for record, lead in zip(document["events"], demo.LEAD_DAYS, strict=True):
        start = datetime.fromisoformat(record["starts_at"])
        local = start.astimezone(ZoneInfo(record["timezone"]))
        assert lead <= (local.date() - today).days < lead + 7
        original = datetime.fromisoformat(
            next(e for e in demo.load_document()["events"] if e["slug"] == record["slug"])[
                "starts_at"
            ]
        )
        assert local.strftime("%H:%M %A") == original.strftime("%H:%M %A")
        closes = record.get("registration_closes_at")
        if closes:
            assert datetime.fromisoformat(closes) < start
            assert (datetime.fromisoformat(closes).date() - today).days > 7


def test_users_create_hashes_the_password(runner):
    result = runner.invoke(
        args=["users", "create", "Orga@Example.org", "--admin"],
        input="sehr-geheim-123\nsehr-geheim-123\n",
    )
    assert result.exit_code == 0, result.output
    user = db.session.scalars(select(Organiser)).one()
    assert user.email == "orga@example.org"
    assert user.is_admin
    assert user.password_hash != "sehr-geheim-123"
    assert check_password_hash(user.password_hash, "sehr-geheim-123")


def test_users_create_rejects_bad_input(runner):
    bad_email = runner.invoke(
        args=["users", "create", "nope"], input="sehr-geheim-123\nsehr-geheim-123\n"
    )
    assert bad_email.exit_code != 0
    short = runner.invoke(args=["users", "create", "a@example.org"], input="kurz\nkurz\n")
    assert short.exit_code != 0
    runner.invoke(
        args=["users", "create", "a@example.org"], input="sehr-geheim-123\nsehr-geheim-123\n"
    )
    again = runner.invoke(
        args=["users", "create", "A@example.org"], input="sehr-geheim-123\nsehr-geheim-123\n"
    )
    assert again.exit_code != 0
    assert "exists already" in again.output
    assert db.session.scalar(select(func.count()).select_from(Organiser)) == 1


def test_make_event_factory_is_isolated(app):
    """Guards the fixtures: each test starts with an empty database."""
    assert events() == []
    make_event()
    assert len(events()) == 1
