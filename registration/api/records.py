"""The organiser's JSON view of events and registrations (the API's token-protected part)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from ..models import Registration, RegistrationStatus
from ..services.events import event_record

__all__ = ["event_record", "registration_record"]


def _moment(value: datetime | None, zone: ZoneInfo) -> str | None:
    return value.astimezone(zone).isoformat() if value is not None else None


def registration_record(
    registration: Registration, zone: ZoneInfo, waitlist_position: int | None
) -> dict[str, Any]:
    """One registration as its event's organisers see it, with the answers by question key."""
    return {
        "id": registration.id,
        "email": registration.email,
        "first_name": registration.first_name,
        "last_name": registration.last_name,
        "organisation": registration.organisation,
        "attendance": str(registration.attendance),
        "status": str(registration.status),
        "waitlist_position": (
            waitlist_position if registration.status == RegistrationStatus.WAITLISTED else None
        ),
        "language": registration.language,
        "created_at": _moment(registration.created_at, zone),
        "confirmed_at": _moment(registration.confirmed_at, zone),
        "cancelled_at": _moment(registration.cancelled_at, zone),
        "checked_in_at": _moment(registration.checked_in_at, zone),
        "anonymised_at": _moment(registration.anonymised_at, zone),
        "answers": {answer.question.key: answer.value for answer in registration.answers},
    }
