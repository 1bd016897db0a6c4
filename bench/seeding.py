"""Bulk test data for the benchmarks (not timed): an event and confirmed registrations."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from registration.extensions import db
from registration.models import Event, EventFormat, EventStatus
from registration.timeutil import utcnow
from registration.tokens import hash_token, new_salt


def bench_event(**overrides: Any) -> Event:
    """A published on-site event with unlimited seats, a month ahead, flushed."""
    start = utcnow() + timedelta(days=30)
    values: dict[str, Any] = {
        "slug": "bench", "title": "Fachtagung Interkommunales Wohnen",
        "format": EventFormat.ON_SITE, "status": EventStatus.PUBLISHED, "starts_at": start,
        "ends_at": start + timedelta(hours=6), "venue_name": "Volkshaus Jena",
        "venue_address": "Carl-Zeiß-Platz 15\n07743 Jena", "capacity_on_site": None,
    }  # fmt: skip
    values.update(overrides)
    event = Event(**values)
    db.session.add(event)
    db.session.flush()
    return event


def registration_row(event: Event, i: int, now: datetime, **overrides: Any) -> dict[str, Any]:
    """The columns of a confirmed on-site registration number ``i`` (for a bulk insert)."""
    salt = new_salt()
    row: dict[str, Any] = {
        "event_id": event.id, "email": f"p{i}@example.org", "email_key": f"p{i}@example.org",
        "first_name": "Erika", "last_name": f"Muster {i}", "organisation": "Stadt Jena",
        "attendance": "on_site", "status": "confirmed", "language": "de",
        "privacy_consent_at": now, "created_at": now, "confirmed_at": now,
        "token_salt": salt, "manage_token_hash": hash_token(salt),
    }  # fmt: skip
    row.update(overrides)
    return row
