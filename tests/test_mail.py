"""Emails end to end: outbox -> worker -> a real SMTP server (aiosmtpd), read back and checked."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from icalendar import Calendar
from sqlalchemy import func, select

from registration.extensions import db
from registration.models import (
    EventFormat,
    OutboxMessage,
    OutboxStatus,
    Registration,
)
from registration.services import delivery, events, scheduling, signup
from registration.timeutil import utcnow
from registration.worker import run_once

from .conftest import make_event
from .smtp import SMTPServer, inline_images, recipient

#: Monday after the last Sunday of October 2030 (27 Oct: summer time ends), 10:00 in Berlin.
DST_MONDAY = datetime(2030, 10, 28, 9, 0, tzinfo=UTC)


@pytest.fixture
def smtp(app):
    server = SMTPServer()
    server.start()
    # Read when a transport opens: no re-initialisation needed.
    app.config.update(MAIL_SERVER="127.0.0.1", MAIL_PORT=server.port, MAIL_TIMEOUT=5)
    yield server
    server.stop()


def data(n: int | str = 1, **overrides) -> signup.SignupData:
    values = {
        "email": f"person{n}@example.org",
        "first_name": "Erika",
        "last_name": f"Muster{n}",
        "privacy_consent": True,
        "language": "de",
    }
    values.update(overrides)
    return signup.SignupData(**values)


def register(event, n=1, **overrides) -> Registration:
    result = signup.register(event, data(n, **overrides))
    db.session.commit()
    return result.registration


def text_part(message) -> str:
    return message.get_body(("plain",)).get_content()


def html_part(message) -> str:
    return message.get_body(("html",)).get_content()


def outbox(kind: str | None = None) -> list[OutboxMessage]:
    db.session.expire_all()
    stmt = select(OutboxMessage).order_by(OutboxMessage.id)
    if kind:
        stmt = stmt.where(OutboxMessage.kind == kind)
    return list(db.session.scalars(stmt))


def hybrid_event(**overrides):
    values = {
        "slug": "fachtagung",
        "title": "Fachtagung Interkommunales Wohnen",
        "format": EventFormat.HYBRID,
        "capacity_on_site": 10,
        "capacity_online": 10,
        "venue_name": "Volkshaus Jena",
        "venue_address": "Carl-Zeiß-Platz 15\n07743 Jena",
        "contact_name": "Wirtschaftsförderung Jena",
        "contact_email": "orga@example.org",
        "dial_in_url": "https://meet.example.org/room-1",
        "dial_in_meeting_id": "842 1193",
        "dial_in_passcode": "Interko2",
        "dial_in_phone": "+49 30 1234",
        "dial_in_instructions": "Bitte ab 9:15 Uhr einwählen.",
    }
    values.update(overrides)
    return make_event(**values)


def test_confirmation_in_german_with_both_parts_calendar_and_a_working_manage_link(
    app, client, smtp
):
    event = hybrid_event(starts_at=datetime(2030, 9, 18, 7, 30, tzinfo=UTC))
    registration = register(event, attendance="on_site")
    result = run_once()
    assert result.sent == 1

    (message,) = smtp.messages
    assert message["To"] == "Erika Muster1 <person1@example.org>"  # named, as mail clients expect
    assert message["Subject"] == "Anmeldebestätigung: Fachtagung Interkommunales Wohnen"
    assert message["Reply-To"] == "Wirtschaftsförderung Jena <orga@example.org>"
    assert message["Message-ID"].startswith(f"<outbox-{outbox()[0].id}-")
    text, html = text_part(message), html_part(message)
    assert "Guten Tag Erika Muster1," in text
    assert "Mittwoch, 18. September 2030, 09:30–15:00 Uhr" in text
    assert "Volkshaus Jena, Carl-Zeiß-Platz 15, 07743 Jena" in text
    assert "<strong>Fachtagung Interkommunales Wohnen</strong>" in html
    assert "Interko2" not in text and "Interko2" not in html  # on-site: no dial-in (invariant 4)

    (attachment,) = list(message.iter_attachments())
    (qr_code,) = inline_images(message)  # on site: the check-in QR code, shown by the HTML
    assert qr_code.get_content_type() == "image/png" and qr_code["Content-ID"] == "<checkin-qr>"
    calendar = Calendar.from_ical(attachment.get_content())
    assert str(calendar["method"]) == "PUBLISH"
    (vevent,) = calendar.walk("VEVENT")
    assert str(vevent["uid"]) == f"registration-{registration.id}@localhost"
    assert vevent.decoded("dtstart") == datetime(2030, 9, 18, 7, 30, tzinfo=UTC)

    manage_url = re.search(r"http://localhost(/manage/\S+)", text).group(1)
    assert "Erika Muster1" in client.get(manage_url).get_data(as_text=True)
    assert outbox()[0].status == OutboxStatus.SENT


def test_english_participants_get_english_mail(app, smtp):
    event = hybrid_event(starts_at=datetime(2030, 9, 18, 7, 30, tzinfo=UTC))
    register(event, language="en", attendance="online")
    run_once()
    (message,) = smtp.messages
    assert message["Subject"] == "Registration confirmed: Fachtagung Interkommunales Wohnen"
    text = text_part(message)
    assert "Dear Erika Muster1," in text
    assert "Wednesday, September 18, 2030, 09:30–15:00" in text
    assert "you receive the dial-in details by email shortly before the event" in text
    assert "meet.example.org" not in text


def test_waiting_list_promotion_and_cancellation_mails(app, smtp):
    event = hybrid_event(capacity_on_site=1)
    first = register(event, 1, attendance="on_site")
    register(event, 2, attendance="on_site")
    run_once()
    waiting = smtp.to("person2@example.org")
    assert waiting[0]["Subject"] == "Warteliste: Fachtagung Interkommunales Wohnen"
    assert "Warteliste, Platz 1" in text_part(waiting[0])

    signup.cancel(first)
    db.session.commit()
    run_once()
    cancelled = smtp.to("person1@example.org")[-1]
    assert cancelled["Subject"] == "Stornierung bestätigt: Fachtagung Interkommunales Wohnen"
    promoted = smtp.to("person2@example.org")[-1]
    assert promoted["Subject"] == "Sie haben einen Platz: Fachtagung Interkommunales Wohnen"
    assert "/manage/" in text_part(promoted)
    assert [p.get_content_type() for p in promoted.iter_attachments()] == ["text/calendar"]
    assert [p.get_content_type() for p in inline_images(promoted)] == ["image/png"]


def test_without_mail_server_messages_become_files(app, tmp_path):
    app.config.update(MAIL_SERVER=None, MAIL_FILE_DIR=str(tmp_path / "mail"))
    register(make_event())
    assert run_once().sent == 1
    (path,) = list(Path(tmp_path / "mail").glob("*.eml"))
    assert b"Subject: =?utf-8?q?Anmeldebest" in path.read_bytes()


def test_each_email_goes_out_once_however_often_the_worker_runs(app, smtp):
    register(make_event())
    for _ in range(3):
        run_once()
    assert len(smtp.messages) == 1


def test_reminder_exactly_once_at_local_time_across_daylight_saving(app, smtp, clock):
    clock.now = datetime(2030, 10, 1, 8, 0, tzinfo=UTC)
    event = make_event(starts_at=DST_MONDAY, ends_at=DST_MONDAY + timedelta(hours=6))
    register(event)
    run_once()  # the confirmation
    # 2 days before 10:00 CET on Monday is Saturday 10:00 CEST = 08:00 UTC (not 09:00 UTC).
    assert scheduling.reminder_at(event) == datetime(2030, 10, 26, 8, 0, tzinfo=UTC)

    clock.now = datetime(2030, 10, 26, 7, 59, tzinfo=UTC)
    run_once()
    assert len(smtp.messages) == 1
    clock.now = datetime(2030, 10, 26, 8, 0, tzinfo=UTC)
    run_once()
    run_once()
    clock.advance(days=1)
    run_once()
    reminders = [m for m in smtp.messages if m["Subject"].startswith("Erinnerung")]
    assert len(reminders) == 1
    assert (
        reminders[0]["Subject"]
        == "Erinnerung: Werkstatt am Montag, 28. Oktober 2030, 10:00–16:00 Uhr"
    )


def test_late_worker_still_sends_the_reminder_but_not_after_the_start(app, smtp, clock):
    clock.now = datetime(2030, 10, 1, 8, 0, tzinfo=UTC)
    event = make_event(starts_at=DST_MONDAY, ends_at=DST_MONDAY + timedelta(hours=6))
    register(event, 1)
    clock.now = DST_MONDAY - timedelta(hours=3)  # the worker was down for two days
    run_once()
    assert len(outbox("reminder")) == 1
    other = make_event(slug="over", starts_at=DST_MONDAY, ends_at=DST_MONDAY + timedelta(hours=6))
    clock.now = datetime(2030, 10, 1, 8, 0, tzinfo=UTC)
    register(other, 2)
    clock.now = DST_MONDAY + timedelta(minutes=5)
    run_once()
    assert [r.registration_id for r in outbox("reminder")] == [1]


def test_cancelled_participant_gets_no_reminder(app, smtp, clock):
    clock.now = datetime(2030, 10, 1, 8, 0, tzinfo=UTC)
    event = make_event(starts_at=DST_MONDAY, ends_at=DST_MONDAY + timedelta(hours=6))
    gone = register(event, 1)
    signup.cancel(gone)
    db.session.commit()
    # Cancelled after the reminder was queued but before it was sent: skipped, not sent.
    late = register(event, 2)
    clock.now = datetime(2030, 10, 26, 8, 0, tzinfo=UTC)
    scheduling.schedule_due()
    db.session.commit()
    signup.cancel(late)
    db.session.commit()
    run_once()
    assert not [m for m in smtp.messages if m["Subject"].startswith("Erinnerung")]
    (reminder,) = outbox("reminder")
    assert (reminder.registration_id, reminder.status) == (late.id, OutboxStatus.SKIPPED)


def dial_in_mails(smtp: SMTPServer) -> list:
    return [m for m in smtp.messages if "Einwahldaten" in str(m["Subject"])]


def test_dial_in_only_to_confirmed_online_participants(app, client, smtp, clock):
    clock.now = datetime(2030, 10, 1, 8, 0, tzinfo=UTC)
    event = hybrid_event(
        starts_at=DST_MONDAY, ends_at=DST_MONDAY + timedelta(hours=6), capacity_online=1
    )
    online = register(event, 1, attendance="online")
    register(event, 2, attendance="on_site")
    register(event, 3, attendance="online")  # waiting list
    run_once()
    clock.now = DST_MONDAY - timedelta(hours=24, minutes=1)
    run_once()
    assert dial_in_mails(smtp) == []
    clock.now = DST_MONDAY - timedelta(hours=24)
    run_once()
    run_once()
    (message,) = dial_in_mails(smtp)
    assert recipient(message) == "person1@example.org"
    assert message["Subject"] == "Einwahldaten: Fachtagung Interkommunales Wohnen"
    text = text_part(message)
    for detail in (
        "https://meet.example.org/room-1",
        "842 1193",
        "Interko2",
        "+49 30 1234",
        "ab 9:15 Uhr",
    ):
        assert detail in text
    join_path = re.search(r"http://localhost(/join/\S+)", text).group(1)
    response = client.get(join_path)
    assert (response.status_code, response.headers["Location"]) == (
        303,
        "https://meet.example.org/room-1",
    )
    db.session.refresh(online)
    assert online.joined_at == clock.now


def test_join_link_reveals_nothing_to_anyone_else(app, client, smtp):
    event = hybrid_event()
    on_site = register(event, 1, attendance="on_site")
    online = register(event, 2, attendance="online")
    for registration, expected in ((on_site, 404), (online, 303)):
        token = signup.personal_token(registration, "join")
        assert client.get(f"/join/{token}").status_code == expected
    token = signup.personal_token(online, "join")
    signup.cancel(online)
    db.session.commit()
    for bad in (token, f"{online.id}.{'A' * 43}", "1.x", "garbage", signup.manage_token(online)):
        response = client.get(f"/join/{bad}")
        assert response.status_code == 404
        assert "meet.example.org" not in response.get_data(as_text=True)
    db.session.refresh(on_site)
    assert on_site.joined_at is None


def test_late_sign_up_gets_the_dial_in_at_once(app, smtp, clock):
    clock.now = DST_MONDAY - timedelta(hours=3)
    event = hybrid_event(starts_at=DST_MONDAY, ends_at=DST_MONDAY + timedelta(hours=6))
    register(event, attendance="online")
    assert [r.kind for r in outbox()] == ["confirmation", "dial_in"]  # same transaction
    run_once()
    confirmation = next(m for m in smtp.messages if m["Subject"].startswith("Anmeldebestätigung"))
    assert "Interko2" in text_part(confirmation)  # the details themselves, send time has passed
    assert len(dial_in_mails(smtp)) == 1


def test_promotion_to_online_after_the_send_time_gets_the_dial_in(app, smtp, clock):
    clock.now = datetime(2030, 10, 1, 8, 0, tzinfo=UTC)
    event = hybrid_event(
        starts_at=DST_MONDAY, ends_at=DST_MONDAY + timedelta(hours=6), capacity_online=1
    )
    seat = register(event, 1, attendance="online")
    waiting = register(event, 2, attendance="online")
    clock.now = DST_MONDAY - timedelta(hours=2)
    signup.cancel(seat)
    db.session.commit()
    run_once()
    assert [recipient(m) for m in dial_in_mails(smtp)] == ["person2@example.org"]
    assert waiting.id in {r.registration_id for r in outbox("dial_in")}


def test_changed_dial_in_details_reach_those_who_had_them(app, client, smtp, clock, tmp_path):
    clock.now = datetime(2030, 10, 1, 8, 0, tzinfo=UTC)
    event = hybrid_event(starts_at=DST_MONDAY, ends_at=DST_MONDAY + timedelta(hours=6))
    online = register(event, 1, attendance="online")
    register(event, 2, attendance="on_site")
    clock.now = DST_MONDAY - timedelta(hours=20)
    run_once()
    assert len(dial_in_mails(smtp)) == 1

    record = {
        "slug": "fachtagung", "title": event.title, "format": "hybrid",
        "starts_at": DST_MONDAY.isoformat(), "ends_at": (DST_MONDAY + timedelta(hours=6)).isoformat(),
        "status": "published", "capacity": {"on_site": 10, "online": 10},
        "venue": {"name": "Volkshaus Jena", "address": "Carl-Zeiß-Platz 15"},
        "contact": {"email": "orga@example.org"},
        "dial_in": {"url": "https://meet.example.org/room-2", "meeting_id": "999",
                    "passcode": "Neu123", "phone": "+49 30 1234"},
    }  # fmt: skip
    events.import_events({"events": [record]})
    run_once()
    run_once()
    updates = [m for m in smtp.messages if m["Subject"].startswith("Geänderte Einwahldaten")]
    assert [recipient(m) for m in updates] == ["person1@example.org"]
    assert "room-2" in text_part(updates[0]) and "Neu123" in text_part(updates[0])
    token = signup.personal_token(online, "join")
    assert client.get(f"/join/{token}").headers["Location"] == "https://meet.example.org/room-2"


def test_event_cancelled_by_the_organiser_tells_active_participants(app, smtp):
    event = hybrid_event()
    register(event, 1, attendance="on_site")
    gone = register(event, 2, attendance="online")
    signup.cancel(gone)
    db.session.commit()
    run_once()
    before = len(smtp.messages)
    assert events.cancel_event(event, actor=None, notify=True) == 1
    run_once()
    new = smtp.messages[before:]
    assert [(recipient(m), m["Subject"]) for m in new] == [
        ("person1@example.org", "Abgesagt: Fachtagung Interkommunales Wohnen")
    ]


def test_event_changed_mail_carries_the_organisers_message(app, smtp):
    event = hybrid_event()
    register(event, 1, attendance="on_site")
    run_once()
    events.notify_participants(event, "event_changed", {"message": "Neuer Raum: Saal 2 <b>"})
    db.session.commit()
    run_once()
    message = smtp.messages[-1]
    assert message["Subject"] == "Änderungen: Fachtagung Interkommunales Wohnen"
    assert "Neuer Raum: Saal 2 <b>" in text_part(message)
    assert "Neuer Raum: Saal 2 &lt;b&gt;" in html_part(message)


def test_mail_server_down_then_up_delivers_everything_once(app, clock):
    clock.now = datetime(2030, 10, 1, 8, 0, tzinfo=UTC)
    server = SMTPServer()  # not started: connection refused
    app.config.update(MAIL_SERVER="127.0.0.1", MAIL_PORT=server.port, MAIL_TIMEOUT=5)
    event = make_event(capacity_on_site=None)
    for n in range(5):
        register(event, n)
    result = run_once()
    assert (result.sent, result.retry) == (0, 5)
    rows = outbox()
    assert {r.attempts for r in rows} == {1}
    assert all(r.next_attempt_at == clock.now + timedelta(minutes=1) for r in rows)
    assert "ConnectionRefusedError" in rows[0].last_error

    clock.advance(seconds=30)
    assert run_once().handled == 0  # back-off: not yet
    server.start()
    try:
        clock.advance(minutes=1)
        assert run_once().sent == 5
        run_once()
        assert sorted(recipient(m) for m in server.messages) == [
            f"person{n}@example.org" for n in range(5)
        ]
        assert {r.status for r in outbox()} == {OutboxStatus.SENT}
    finally:
        server.stop()


def test_permanent_refusal_fails_with_reason_and_temporary_retries(app, smtp):
    event = make_event(capacity_on_site=None)
    register(event, 1, email="reject-me@example.org")
    register(event, 2, email="later@example.org")
    register(event, 3)
    result = run_once()
    assert (result.sent, result.failed, result.retry) == (1, 1, 1)
    by_email = {r.registration.email: r for r in outbox()}
    assert by_email["reject-me@example.org"].status == OutboxStatus.FAILED
    assert "550" in by_email["reject-me@example.org"].last_error
    assert by_email["later@example.org"].status == OutboxStatus.PENDING
    assert "451" in by_email["later@example.org"].last_error
    assert [recipient(m) for m in smtp.messages] == ["person3@example.org"]


def test_backoff_grows_and_gives_up(app):
    assert [delivery.backoff(n).total_seconds() / 60 for n in (1, 2, 3, 4)] == [1, 2, 4, 8]
    assert delivery.backoff(30) == timedelta(hours=6)


def test_stop_finishes_the_message_in_hand_and_gives_the_rest_back(app, smtp):
    event = make_event(capacity_on_site=None)
    for n in range(4):
        register(event, n)
    ids = delivery.claim(10, utcnow(), "w1")
    sent = iter([False, True])  # stop after the first message
    result = delivery.send_batch(ids, should_stop=lambda: next(sent, True))
    assert result.sent == 1
    rows = outbox()
    assert [r.status for r in rows] == ["sent", "pending", "pending", "pending"]
    assert all(r.locked_until is None for r in rows[1:])
    assert run_once().sent == 3


def test_a_crashed_workers_lease_expires(app, smtp, clock):
    clock.now = datetime(2030, 10, 1, 8, 0, tzinfo=UTC)
    register(make_event())
    assert delivery.claim(10, clock.now, "crashed") != []
    assert run_once().handled == 0  # leased to the crashed worker
    clock.advance(minutes=11)
    assert run_once().sent == 1


def test_send_due_cli(app, runner, smtp):
    register(make_event())
    result = runner.invoke(args=["mail", "send-due"])
    assert result.exit_code == 0, result.output
    assert "sent 1" in result.output
    assert len(smtp.messages) == 1


# Several workers are a PostgreSQL feature (SKIP LOCKED); on SQLite one worker is enough.
@pytest.mark.parametrize(
    "database_url", [pytest.param("postgresql", marks=pytest.mark.postgresql)], indirect=True
)
def test_two_workers_on_postgresql_deliver_500_messages_exactly_once(app, smtp):
    import threading

    assert db.engine.dialect.name == "postgresql"
    event = make_event(capacity_on_site=None)
    db.session.execute(
        OutboxMessage.__table__.insert(),
        [
            {"kind": "confirmation", "registration_id": r.id, "event_id": event.id,
             "dedupe_key": f"bulk:{r.id}", "status": "pending", "attempts": 0,
             "next_attempt_at": utcnow(), "last_error": "", "created_at": utcnow()}
            for r in [register(event, n) for n in range(500)]
        ],
    )  # fmt: skip
    db.session.execute(
        OutboxMessage.__table__.delete().where(OutboxMessage.dedupe_key.like("confirmation:%"))
    )
    db.session.commit()
    totals: list[int] = []

    def work(name: str) -> None:
        with app.app_context():
            totals.append(delivery.send_due(batch_size=25, worker=name).sent)
            db.session.remove()

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    ids = [m["Message-ID"] for m in smtp.messages]
    assert len(ids) == 500 and len(set(ids)) == 500
    assert sum(totals) == 500 and all(t > 0 for t in totals)  # both worked, none twice
    assert db.session.scalar(select(func.count()).where(OutboxMessage.status == "sent")) == 500


def parts(message) -> tuple[str, str]:
    from email import message_from_bytes, policy

    parsed = message_from_bytes(message.as_bytes(), policy=policy.default)
    return text_part(parsed), html_part(parsed)


def test_batch_rendering_equals_rendering_one_by_one(app):
    from registration.notifications import build_message, build_messages

    event = hybrid_event(capacity_on_site=2)
    names = ["Anna <b>&", "Jürgen Weiß", 'O\'Brien "Q"', "Zoë", "Ünal"]
    for n, name in enumerate(names):
        first, last = name.split(" ", 1) if " " in name else (name, "X")
        register(event, n, first_name=first, last_name=last, attendance="on_site",
                 language="en" if n == 3 else "de")  # fmt: skip
    rows = outbox()
    with app.test_request_context("/", base_url=app.config["BASE_URL"]):
        batch = build_messages(rows)
        single = [build_message(row) for row in rows]
    assert len({r.kind for r in rows}) == 2  # confirmation and waitlisted groups
    for merged, alone in zip(batch, single, strict=True):
        assert parts(merged) == parts(alone)
    assert "Anna &lt;b&gt;&amp;" in parts(batch[0])[1] and "Anna <b>&" in parts(batch[0])[0]


def test_a_template_that_uses_a_name_differently_gets_each_persons_name(app, smtp):
    from jinja2 import ChoiceLoader, DictLoader

    app.jinja_loader  # noqa: B018  (the default loader, created on first use)
    app.jinja_env.loader = ChoiceLoader(
        [
            DictLoader({"email/confirmation.txt": "Hallo {{ registration.full_name|upper }}"}),
            app.jinja_env.loader,
        ]
    )
    event = make_event(capacity_on_site=None)
    for n in range(3):
        register(event, n)
    run_once()
    texts = sorted(text_part(m).rstrip("\r\n") for m in smtp.messages)
    assert texts == [f"Hallo ERIKA MUSTER{n}" for n in range(3)]


def test_a_template_error_fails_the_row_without_blocking_the_queue(app, smtp):
    from jinja2 import ChoiceLoader, DictLoader

    app.jinja_env.loader = ChoiceLoader(
        [DictLoader({"email/waitlisted.txt": "{{ 1 / 0 }}"}), app.jinja_env.loader]
    )
    event = make_event(capacity_on_site=1)
    register(event, 1)
    register(event, 2)
    result = run_once()
    assert (result.sent, result.failed) == (1, 1)
    failed = outbox("waitlisted")[0]
    assert failed.status == OutboxStatus.FAILED and "ZeroDivisionError" in failed.last_error
