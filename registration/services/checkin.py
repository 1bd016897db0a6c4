"""Check-in on the day: one click per person, undo, counts. Every change is audit-logged."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from ..extensions import db
from ..models import Event, Organiser, Registration, RegistrationStatus
from ..timeutil import utcnow
from . import audit
from .errors import NotActive


@dataclass(frozen=True)
class Counts:
    checked_in: int
    expected: int
    joined_online: int


def check_in(registration: Registration, actor: Organiser, *, now: datetime | None = None) -> bool:
    """Mark a confirmed participant as present (audited, committed). Returns False if they
    were already."""
    if registration.status != RegistrationStatus.CONFIRMED:
        raise NotActive()
    if registration.checked_in_at is not None:
        return False
    registration.checked_in_at = now or utcnow()
    audit.record(
        actor, "checkin", event=registration.event, subject=f"registration:{registration.id}"
    )
    db.session.commit()
    return True


def undo(registration: Registration, actor: Organiser) -> bool:
    """Take a check-in back (a wrong click at the door); audited, committed."""
    if registration.checked_in_at is None:
        return False
    registration.checked_in_at = None
    audit.record(
        actor, "checkin.undo", event=registration.event, subject=f"registration:{registration.id}"
    )
    db.session.commit()
    return True


def counts(event: Event) -> Counts:
    checked, expected, joined = db.session.execute(
        select(
            func.count(Registration.checked_in_at),
            func.count(),
            func.count(Registration.joined_at),
        ).where(
            Registration.event_id == event.id,
            Registration.status == RegistrationStatus.CONFIRMED,
        )
    ).one()
    return Counts(checked_in=checked, expected=expected, joined_online=joined)
