"""Any number of scheduled mails falls due in one pass: each kind is one INSERT ... SELECT, so
no statement grows with the participants (a list of rows outgrew PostgreSQL's 65,535 parameters
at about 8,000 people)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, insert, select

from registration.extensions import db
from registration.models import EventFormat, OutboxMessage, Registration
from registration.services import scheduling

from .conftest import make_event

PEOPLE = 10_000


def crowd(event_id: int, attendance: str, since: datetime) -> None:
    db.session.execute(
        insert(Registration),
        [
            {
                "event_id": event_id, "email": f"p{n}@example.org",
                "email_key": f"p{n}@example.org", "first_name": "P", "last_name": str(n),
                "attendance": attendance, "status": "confirmed", "language": "de",
                "privacy_consent_at": since, "created_at": since, "confirmed_at": since,
                "token_salt": f"salt{n}", "manage_token_hash": f"{event_id}-{n}",
            }
            for n in range(PEOPLE)
        ],
    )  # fmt: skip
    db.session.commit()


def outbox_count(kind: str) -> int:
    return db.session.scalar(
        select(func.count()).select_from(OutboxMessage).where(OutboxMessage.kind == kind)
    )


def test_ten_thousand_reminders_and_dial_ins_fall_due_in_one_pass(app):
    start = datetime(2030, 6, 10, 9, 0, tzinfo=UTC)
    on_site = make_event(slug="gross", starts_at=start, capacity_on_site=None)
    online = make_event(
        slug="online", format=EventFormat.ONLINE, starts_at=start, capacity_online=None,
        dial_in_url="https://meet.example.org/x",
    )  # fmt: skip
    signed_up = start - timedelta(days=30)
    crowd(on_site.id, "on_site", signed_up)
    crowd(online.id, "online", signed_up)
    now = start - timedelta(hours=12)  # past the reminder (2 days) and the dial-in (24 hours)

    created = scheduling.schedule_due(now)
    db.session.commit()
    assert created == 3 * PEOPLE
    assert outbox_count("reminder") == 2 * PEOPLE and outbox_count("dial_in") == PEOPLE
    # The next pass (or a second worker) adds nothing.
    assert scheduling.schedule_due(now) == 0
    # New dial-in details reach everyone who had the old ones, once.
    online.dial_in_revision += 1
    db.session.commit()
    assert scheduling.schedule_due(now) == PEOPLE
    db.session.commit()
    assert outbox_count("dial_in_update") == PEOPLE
    assert scheduling.schedule_due(now) == 0
