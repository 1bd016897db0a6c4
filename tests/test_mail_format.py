"""The wire format: every kind of mail parses without a defect, headers carry no injected lines,
names and long addresses survive, one bad row fails alone, and nobody gets another's data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import delete, select, update

from registration.extensions import db
from registration.mailer import Message
from registration.models import (
    Attendance,
    Event,
    Organiser,
    OutboxMessage,
    OutboxStatus,
    Registration,
    RegistrationStatus,
)
from registration.notifications import build_messages
from registration.services import signup
from registration.worker import run_once

from .conftest import make_event
from .smtp import SMTPServer, inline_images, recipient
from .test_mail import hybrid_event, outbox, register, smtp, text_part  # noqa: F401 (fixture)

#: An office's real sender line: umlauts, a dash, parentheses that are part of the name.
LONG_SENDER_NAME = "Bündnis für Wohnen – Anmeldung Herzberg (Elster)"
LONG_SENDER = f"{LONG_SENDER_NAME} <anmeldung@example.org>"
#: 75 characters: with a name in front, To cannot fit on one 78-character line.
ADDRESS_75 = "juergen.mueszig-oeztuerk.referat-wohnungsbaufoerderung-und-stadt@example.de"
assert len(ADDRESS_75) == 75

ALL_KINDS = [
    "confirmation", "waitlisted", "promoted", "attendance_changed", "cancellation", "reminder",
    "dial_in", "dial_in_update", "event_changed", "event_cancelled", "message", "password_reset",
    "manage_link",
]  # fmt: skip


def test_every_kind_of_mail_is_checked_here():
    from registration.notifications import KINDS, ORGANISER_KINDS

    assert sorted(ALL_KINDS) == sorted([*KINDS, *ORGANISER_KINDS])


def strict(raw: bytes) -> EmailMessage:
    return message_from_bytes(raw, policy=policy.strict)  # type: ignore[return-value]


def defects(message: EmailMessage) -> list[str]:
    """Every defect the parser found: of the message, of each part, of each header."""
    found = []
    for part in message.walk():
        found += [f"part {part.get_content_type()}: {d!r}" for d in part.defects]
        for name, value in part.items():
            found += [f"{name}: {d!r}" for d in getattr(value, "defects", ())]
    return found


def name_of(header) -> str:
    """The display name, whitespace normalised (Python's parser doubles a space where a folded
    encoded-word ends in one; the bytes are right)."""
    (address,) = header.addresses
    return " ".join(address.display_name.split())


def row_for(kind: str, *, email: str = ADDRESS_75) -> OutboxMessage:
    """A stored outbox row of ``kind`` for a participant (or organiser) with umlauts in the name,
    in the state in which that kind applies."""
    if kind == "password_reset":
        organiser = Organiser(email=email, name="Jürgen Müßig-Öztürk", password_hash="-")
        db.session.add(organiser)
        db.session.flush()
        row = OutboxMessage(
            kind=kind, dedupe_key=f"{kind}:1",
            payload={"organiser_id": organiser.id, "language": "de"},
        )  # fmt: skip
        db.session.add(row)
        db.session.commit()
        return row
    online = kind in ("dial_in", "dial_in_update")
    event = hybrid_event(
        slug=f"werkstatt-{kind.replace('_', '-')}",
        title="Bündnis für Wohnen – 21. Werkstatt „Wohnen im ländlichen Raum“ in Herzberg (Elster)",
        contact_name="Geschäftsstelle Bündnis für Wohnen",
        starts_at=datetime.now(UTC) + timedelta(hours=20),  # dial-in details are due
        capacity_on_site=1 if kind == "waitlisted" else 10,
    )
    if kind == "waitlisted":
        register(event, "seat", attendance="on_site")  # takes the only seat
    registration = register(
        event, first_name="Jürgen", last_name="Müßig-Öztürk", email=email,
        attendance="online" if online else "on_site",
    )  # fmt: skip
    assert (registration.status == RegistrationStatus.WAITLISTED) == (kind == "waitlisted")
    if kind == "cancellation":
        signup.cancel(registration)
    db.session.execute(delete(OutboxMessage))  # only the row of this kind
    payload = {
        "event_changed": {"message": "Neuer Raum: Saal 2 im Erdgeschoss, Zugang barrierefrei."},
        "message": {"subject": "Hinweise zur Anreise", "body": "Bitte nutzen Sie den **Bus**."},
        "dial_in_update": {"revision": event.dial_in_revision},
    }.get(kind)
    row = OutboxMessage(
        kind=kind, registration=registration, event_id=event.id,
        dedupe_key=f"{kind}:{registration.id}", payload=payload,
    )  # fmt: skip
    db.session.add(row)
    db.session.commit()
    return row


def build(app, row: OutboxMessage) -> Message:
    with app.test_request_context("/", base_url=app.config["BASE_URL"]):
        (message,) = build_messages([row])
    assert isinstance(message, Message), message
    return message


@pytest.mark.parametrize("kind", ALL_KINDS)
def test_every_kind_parses_strictly_without_a_defect(app, kind):
    app.config["MAIL_DEFAULT_SENDER"] = LONG_SENDER
    raw = build(app, row_for(kind)).as_bytes()
    parsed = strict(raw)
    assert defects(parsed) == []
    assert all(len(line) <= 78 for line in raw.split(b"\r\n")), "a line longer than 78"
    assert b"\n" not in raw.replace(b"\r\n", b"")  # CRLF only
    assert parsed["From"].addresses[0].addr_spec == "anmeldung@example.org"
    assert name_of(parsed["From"]) == LONG_SENDER_NAME
    assert recipient(parsed) == ADDRESS_75
    assert name_of(parsed["To"]) == "Jürgen Müßig-Öztürk"
    assert ADDRESS_75.encode() in raw  # the address itself, never an encoded-word
    assert parsed["Auto-Submitted"] == "auto-generated"
    assert parsed["Message-ID"].startswith(f"<outbox-{outbox(kind)[0].id}-")
    assert parsed.get_body(("plain",)).get_content().strip()
    assert parsed.get_body(("html",)).get_content().strip()
    if kind != "password_reset":
        assert parsed["Reply-To"].addresses[0].addr_spec == "orga@example.org"
        assert "Werkstatt" in parsed["Subject"] or kind == "message"


def test_the_check_in_code_sits_next_to_the_html_that_shows_it(app):
    parsed = strict(build(app, row_for("confirmation")).as_bytes())
    assert parsed.get_content_type() == "multipart/mixed"
    alternative, calendar = parsed.iter_parts()
    assert alternative.get_content_type() == "multipart/alternative"
    assert calendar.get_content_type() == "text/calendar"
    assert calendar.get_param("method") == "PUBLISH"
    plain, related = alternative.iter_parts()
    assert (plain.get_content_type(), related.get_content_type()) == (
        "text/plain",
        "multipart/related",
    )
    html, image = related.iter_parts()
    assert html.get_content_type() == "text/html" and image.get_content_type() == "image/png"
    assert image["Content-ID"] == "<checkin-qr>" and 'src="cid:checkin-qr"' in html.get_content()
    assert inline_images(parsed) == [image]


def test_attachment_file_names_with_umlauts_use_rfc_2231(app):
    row = row_for("confirmation")
    event = db.session.get(Event, row.event_id)
    event.slug = "werkstatt-müritz"
    db.session.commit()
    raw = build(app, row).as_bytes()
    (calendar,) = strict(raw).iter_attachments()
    assert calendar.get_filename() == "werkstatt-müritz.ics"
    assert b"filename*=utf-8''werkstatt-m%C3%BCritz.ics" in raw


def test_from_keeps_the_whole_office_name_and_a_parseable_address(app):
    app.config["MAIL_DEFAULT_SENDER"] = LONG_SENDER
    raw = build(app, row_for("confirmation")).as_bytes()
    parsed = strict(raw)
    assert defects(parsed) == []
    assert parsed["From"].addresses[0].addr_spec == "anmeldung@example.org"
    assert name_of(parsed["From"]) == LONG_SENDER_NAME


def test_a_recipient_address_longer_than_a_line_stays_an_address(app):
    long_address = "x" * 64 + "@referat-wohnungsbau.example.org"
    assert len(long_address) > 78
    raw = build(app, row_for("confirmation", email=long_address)).as_bytes()
    parsed = strict(raw)
    assert defects(parsed) == []
    assert recipient(parsed) == long_address
    assert long_address.encode() in raw


def test_a_line_break_in_a_title_does_not_stop_the_mail(app, smtp):  # noqa: F811
    broken = make_event(slug="broken", title="Werkstatt")
    other = make_event(slug="other", title="Fachtag")
    register(broken, 1)
    register(other, 2)
    # The entry points refuse such a title; a row written some other way must not stop the queue.
    db.session.execute(
        update(Event).where(Event.id == broken.id).values(title="Werkstatt\nBcc: x@example.com")
    )
    db.session.commit()
    result = run_once()
    assert (result.sent, result.failed) == (2, 0)
    subjects = {recipient(m): m["Subject"] for m in smtp.messages}
    assert subjects == {
        "person1@example.org": "Anmeldebestätigung: Werkstatt Bcc: x@example.com",
        "person2@example.org": "Anmeldebestätigung: Fachtag",
    }
    assert smtp.envelope_recipients == [["person1@example.org"], ["person2@example.org"]]
    assert {r.status for r in outbox()} == {OutboxStatus.SENT}


def test_a_row_that_cannot_be_built_fails_alone_and_the_batch_goes_on(app, smtp):  # noqa: F811
    event = make_event(capacity_on_site=None)
    for n in range(3):
        register(event, n)
    # An address that is no address (only a direct database write gets one in).
    db.session.execute(
        update(Registration).where(Registration.email == "person1@example.org")
        .values(email="person1@example.org\nBcc: victim@example.com")
    )  # fmt: skip
    db.session.commit()
    result = run_once()
    assert (result.sent, result.failed, result.retry) == (2, 1, 0)
    assert sorted(recipient(m) for m in smtp.messages) == [
        "person0@example.org",
        "person2@example.org",
    ]
    (failed,) = [r for r in outbox() if r.status == OutboxStatus.FAILED]
    assert failed.registration.email.startswith("person1@")
    assert "render error: ValueError" in failed.last_error and "CR or LF" in failed.last_error
    assert run_once().handled == 0  # nothing stuck: the next pass has nothing to do


def test_international_addresses_go_out_or_fail_alone_with_a_reason(app, smtp):  # noqa: F811
    """The sign-up form takes both. A domain with umlauts goes out in its ASCII form; a local
    part with umlauts would need SMTPUTF8 end to end, so that one row fails and says why."""
    event = make_event(capacity_on_site=None)
    register(event, 1, email="anna@müller-bau.de")
    register(event, 2, email="jürgen@example.org")
    register(event, 3)
    result = run_once()
    assert (result.sent, result.failed, result.retry) == (2, 1, 0)
    failed = outbox()[1]
    assert failed.status == OutboxStatus.FAILED
    assert "non-ASCII local part" in failed.last_error
    assert sorted(recipient(m) for m in smtp.messages) == [
        "anna@xn--mller-bau-q9a.de",
        "person3@example.org",
    ]


def test_an_error_while_sending_one_message_fails_only_that_row(app, tmp_path, monkeypatch):
    from registration.mailer import FileTransport

    app.config.update(MAIL_SERVER=None, MAIL_FILE_DIR=str(tmp_path / "mail"))
    real_send = FileTransport.send

    def send(self, message):
        if message.recipients == ["person1@example.org"]:
            raise UnicodeEncodeError("ascii", "ü", 0, 1, "a transport that cannot take it")
        real_send(self, message)

    monkeypatch.setattr(FileTransport, "send", send)
    event = make_event(capacity_on_site=None)
    for n in range(3):
        register(event, n)
    result = run_once()
    assert (result.sent, result.failed, result.retry) == (2, 1, 0)
    assert [r.status for r in outbox()] == ["sent", "failed", "sent"]
    assert outbox()[1].last_error.startswith("send error: UnicodeEncodeError")
    assert len(list(Path(tmp_path / "mail").glob("*.eml"))) == 2


SUBJECT_WITH_BCC = "Hello\r\nBcc: victim@example.com"


def queue_message(subject: str) -> None:
    event = make_event()
    registration = register(event, 1)
    run_once()  # the confirmation
    db.session.add(
        OutboxMessage(
            kind="message", registration=registration, event_id=event.id,
            dedupe_key="message:injected", payload={"subject": subject, "body": "Text"},
        )
    )  # fmt: skip
    db.session.commit()


def test_an_injected_header_stays_in_the_subject_over_smtp(app, smtp):  # noqa: F811
    queue_message(SUBJECT_WITH_BCC)
    assert run_once().sent == 1
    message = smtp.messages[-1]
    assert message["Bcc"] is None
    assert message["Subject"] == "Hello  Bcc: victim@example.com"
    assert smtp.envelope_recipients[-1] == ["person1@example.org"]


def test_an_injected_header_stays_in_the_subject_in_the_eml_file(app, tmp_path):
    app.config.update(MAIL_SERVER=None, MAIL_FILE_DIR=str(tmp_path / "mail"))
    queue_message(SUBJECT_WITH_BCC)
    for path in Path(tmp_path / "mail").glob("*.eml"):
        path.unlink()  # the confirmation's
    assert run_once().sent == 1
    (path,) = list(Path(tmp_path / "mail").glob("*.eml"))
    raw = path.read_bytes()
    parsed = strict(raw)
    assert parsed["Bcc"] is None and defects(parsed) == []
    header_block = raw.split(b"\r\n\r\n", 1)[0]
    assert b"\nBcc:" not in header_block and b"\rBcc:" not in header_block
    assert not [part for part in parsed.walk() if part["Bcc"] is not None]
    assert parsed["Subject"] == "Hello  Bcc: victim@example.com"


def test_each_participant_gets_only_their_own_data(app, smtp):  # noqa: F811
    """A template that uses the parts of a name: each mail is rendered from its own person
    (a shared rendering with stand-ins once gave everybody the first person's last name)."""
    from jinja2 import ChoiceLoader, DictLoader

    app.jinja_loader  # noqa: B018  (the default loader, created on first use)
    greeting = "Guten Tag {{ registration.first_name }} {{ registration.last_name }}"
    app.jinja_env.loader = ChoiceLoader(
        [
            DictLoader(
                {
                    "email/confirmation.txt": greeting + ", {{ manage_url }}",
                    "email/confirmation.html": "<p>" + greeting + "</p>",
                }
            ),
            app.jinja_env.loader,
        ]
    )
    event = make_event(capacity_on_site=None)
    people = [("Anna", "Albers"), ("Jürgen", "Weiß"), ("Zoë", "Özdemir")]
    for n, (first, last) in enumerate(people):
        register(event, n, first_name=first, last_name=last)
    assert run_once().sent == 3
    by_address = {recipient(m): m for m in smtp.messages}
    registrations = db.session.scalars(select(Registration).order_by(Registration.id)).all()
    for n, (first, last) in enumerate(people):
        message = by_address[f"person{n}@example.org"]
        text, html = text_part(message), message.get_body(("html",)).get_content()
        assert f"Guten Tag {first} {last}," in text
        assert f"Guten Tag {first} {last}</p>" in html
        others = [name for pair in people if pair[0] != first for name in pair]
        assert not [name for name in others if name in text or name in html]
        tokens = [signup.manage_token(r) for r in registrations]
        assert [token in text for token in tokens] == [i == n for i in range(len(tokens))]


def test_a_qr_code_only_while_on_site_and_confirmed(app):
    row = row_for("reminder")
    assert inline_images(strict(build(app, row).as_bytes()))
    row.registration.attendance = Attendance.ONLINE
    db.session.commit()
    assert inline_images(strict(build(app, row).as_bytes())) == []


def test_the_remembering_policy_still_refuses_line_breaks_and_keeps_mails_apart():
    from registration.mailer import WIRE_POLICY, Email

    message = EmailMessage(policy=WIRE_POLICY)
    for value in ("Hello\r\nBcc: victim@example.com", "Hello\nBcc: v@example.com", "a\rb"):
        with pytest.raises(ValueError, match="linefeed or carriage return"):
            message["Subject"] = value

    def mail(n: int, subject: str) -> EmailMessage:
        email = Email(
            subject=subject, sender=LONG_SENDER, to=f"p{n}@example.org", to_name=f"Zoë {n}",
            text="Text", html="<p>Text</p>", message_id=f"<m{n}@example.org>",
        )  # fmt: skip
        return strict(Message(email).as_bytes())

    first, second, again = mail(1, "Eins: Überblick"), mail(2, "Zwei: Ärger"), mail(1, "Eins")
    assert [(str(m["To"]), m["Subject"]) for m in (first, second, again)] == [
        ("Zoë 1 <p1@example.org>", "Eins: Überblick"),
        ("Zoë 2 <p2@example.org>", "Zwei: Ärger"),
        ("Zoë 1 <p1@example.org>", "Eins"),
    ]


def test_smtp_login_from_the_configuration(app):
    server = SMTPServer(login=("anmeldung", "geheim"))
    server.start()
    try:
        app.config.update(
            MAIL_SERVER="127.0.0.1", MAIL_PORT=server.port, MAIL_TIMEOUT=5,
            MAIL_USERNAME="anmeldung", MAIL_PASSWORD="falsch",
        )  # fmt: skip
        register(make_event(), 1)
        refused = run_once()
        assert (refused.sent, refused.retry) == (0, 1) and "535" in refused.errors[0]
        app.config["MAIL_PASSWORD"] = "geheim"
        db.session.execute(update(OutboxMessage).values(next_attempt_at=datetime.now(UTC)))
        db.session.commit()
        assert run_once().sent == 1
        assert set(server.logins) == {"anmeldung"}  # smtplib tries PLAIN, then LOGIN
        assert [recipient(m) for m in server.messages] == ["person1@example.org"]
    finally:
        server.stop()
