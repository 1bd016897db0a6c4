"""Organisers' messages to the participants of an event, sent through the outbox."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from ..extensions import db
from ..models import ACTIVE_STATUSES, Event, Organiser, Registration
from . import audit, outbox


def recipients(event: Event, *, status: str | None, attendance: str | None) -> list[Registration]:
    """Active participants (or those of ``status``), of ``attendance`` if given."""
    stmt = select(Registration).where(
        Registration.event_id == event.id, Registration.anonymised_at.is_(None)
    )
    stmt = stmt.where(
        Registration.status == status if status else Registration.status.in_(ACTIVE_STATUSES)
    )
    if attendance:
        stmt = stmt.where(Registration.attendance == attendance)
    return list(db.session.scalars(stmt.order_by(Registration.id)))


def send(
    event: Event,
    actor: Organiser,
    *,
    subject: str,
    body: str,
    status: str | None = None,
    attendance: str | None = None,
) -> int:
    """Queue the message for everyone matching; one campaign, one row per person. The caller
    commits. Returns the number of recipients."""
    campaign = uuid.uuid4().hex[:12]
    people = recipients(event, status=status, attendance=attendance)
    payload = {"subject": subject, "body": body, "campaign": campaign}
    for registration in people:
        outbox.enqueue_keyed(
            "message", registration, f"message:{campaign}:{registration.id}", payload=payload
        )
    audit.record(
        actor, "message.send", event=event,
        details={"campaign": campaign, "subject": subject, "recipients": len(people),
                 "status": status, "attendance": attendance},
    )  # fmt: skip
    return len(people)
