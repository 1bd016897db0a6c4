"""The organiser's JSON view of events and registrations (the API's token-protected part)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from ..models import Event, Registration, RegistrationStatus
from ..services.events import question_record


def _moment(value: datetime | None, zone: ZoneInfo) -> str | None:
    return value.astimezone(zone).isoformat() if value is not None else None


def event_record(event: Event) -> dict[str, Any]:
    """An event in the import format of :mod:`registration.services.events` (times in the
    event's zone), so what the API returns can be sent back as it is."""
    zone = event.zone
    return {
        "slug": event.slug,
        "title": event.title,
        "subtitle": event.subtitle,
        "description": event.description,
        "format": str(event.format),
        "language": event.language,
        "status": str(event.status),
        "starts_at": _moment(event.starts_at, zone),
        "ends_at": _moment(event.ends_at, zone),
        "timezone": event.timezone,
        "venue": {"name": event.venue_name, "address": event.venue_address},
        "contact": {
            "name": event.contact_name,
            "email": event.contact_email,
            "phone": event.contact_phone,
        },
        "capacity": {"on_site": event.capacity_on_site, "online": event.capacity_online},
        "waitlist": event.waitlist_enabled,
        "registration_opens_at": _moment(event.registration_opens_at, zone),
        "registration_closes_at": _moment(event.registration_closes_at, zone),
        "dial_in": {
            "url": event.dial_in_url,
            "meeting_id": event.dial_in_meeting_id,
            "passcode": event.dial_in_passcode,
            "phone": event.dial_in_phone,
            "instructions": event.dial_in_instructions,
        },
        "reminder_days_before": event.reminder_days_before,
        "dial_in_hours_before": event.dial_in_hours_before,
        "retention_days": event.retention_days,
        "questions": [question_record(q) for q in event.questions],
    }


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
