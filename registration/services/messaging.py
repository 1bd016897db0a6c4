"""Organisers' messages to the participants of an event, sent through the outbox."""

from __future__ import annotations

import uuid
from typing import Any

from flask_babel import lazy_gettext as _l
from sqlalchemy import Select, func, select

from ..extensions import db
from ..models import (
    Attendance,
    Event,
    Organiser,
    OutboxMessage,
    Registration,
    RegistrationStatus,
)
from . import audit, outbox
from .errors import InvalidInput


def _recipients(event: Event, status: str | None, attendance: str | None) -> Select[Any]:
    """Active participants (or those of ``status``), of ``attendance`` if given; an unknown
    status or attendance is :class:`InvalidInput` naming it, not a database error."""
    errors: dict[str, list[str]] = {}
    if status is not None and status not in {s.value for s in RegistrationStatus}:
        errors["status"] = [_l("Not a valid choice.")]
    if attendance is not None and attendance not in {a.value for a in Attendance}:
        errors["attendance"] = [_l("Not a valid choice.")]
    if errors:
        raise InvalidInput(errors)
    stmt = select(Registration).where(
        Registration.event_id == event.id, Registration.anonymised_at.is_(None)
    )
    stmt = stmt.where(Registration.status == status if status else Registration.is_active)
    if attendance:
        stmt = stmt.where(Registration.attendance == attendance)
    return stmt


def recipients(event: Event, *, status: str | None, attendance: str | None) -> list[Registration]:
    """The people a message with these filters goes to (see :func:`_recipients`)."""
    stmt = _recipients(event, status, attendance)
    return list(db.session.scalars(stmt.order_by(Registration.id)))


def count_recipients(event: Event, *, status: str | None, attendance: str | None) -> int:
    """How many :func:`recipients` there are, counted by the database."""
    stmt = _recipients(event, status, attendance)
    return db.session.scalar(select(func.count()).select_from(stmt.subquery())) or 0


def send(
    event: Event,
    actor: Organiser,
    *,
    subject: str,
    body: str,
    status: str | None = None,
    attendance: str | None = None,
) -> int:
    """Queue the message for everyone matching (one campaign, one row per person), audit it and
    commit. Returns the number of recipients."""
    campaign = uuid.uuid4().hex[:12]
    payload = {"subject": subject, "body": body, "campaign": campaign}
    stmt = _recipients(event, status, attendance).with_only_columns(
        Registration.id, Registration.event_id
    )
    count = outbox.enqueue_for_each("message", stmt, campaign, payload=payload)
    audit.record(
        actor, "message.send", event=event,
        details={"campaign": campaign, "subject": subject, "recipients": count,
                 "status": status, "attendance": attendance},
    )  # fmt: skip
    db.session.commit()
    return count


def retry(event: Event, message: OutboxMessage, actor: Organiser) -> bool:
    """Put a failed email back in the queue (an organiser's decision); commits. Returns whether
    it was failed."""
    if not outbox.retry(message):
        return False
    audit.record(actor, "email.retry", event=event, subject=f"outbox:{message.id}")
    db.session.commit()
    return True


def resend(event: Event, message: OutboxMessage, actor: Organiser) -> OutboxMessage:
    """Send an email once more as a new outbox row (e.g. a confirmation that went missing);
    commits. Returns the copy."""
    copy = outbox.resend(message)
    db.session.flush()
    audit.record(actor, "email.resend", event=event, subject=f"outbox:{copy.id}")
    db.session.commit()
    return copy
