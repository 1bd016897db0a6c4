"""Scheduled mail: reminders and dial-in details become outbox rows when they are due.

``schedule_due`` may run every few seconds, late, twice or in several workers at once: each row
has a unique dedupe key and is inserted with ON CONFLICT DO NOTHING, so nobody gets a scheduled
mail twice, and a pass that runs late still creates what is due (DESIGN.md, "Data flow").
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite

from ..extensions import db
from ..models import (
    Attendance,
    Event,
    EventStatus,
    OutboxMessage,
    Registration,
    RegistrationStatus,
)
from ..timeutil import utcnow


def reminder_at(event: Event) -> datetime | None:
    """N calendar days before the start at the same local wall time (right across DST)."""
    if event.reminder_days_before <= 0:
        return None
    local = event.starts_at.astimezone(event.zone).replace(tzinfo=None)
    send_local = local - timedelta(days=event.reminder_days_before)
    return send_local.replace(tzinfo=event.zone).astimezone(event.starts_at.tzinfo)


def dial_in_at(event: Event) -> datetime:
    """N hours before the start (elapsed hours, not wall-clock)."""
    return event.starts_at - timedelta(hours=event.dial_in_hours_before)


def dial_in_due(event: Event, now: datetime) -> bool:
    return (
        event.status == EventStatus.PUBLISHED
        and Attendance.ONLINE in event.modes
        and event.has_dial_in
        and dial_in_at(event) <= now < event.ends_at
    )


def dial_in_key(registration_id: int, revision: int) -> str:
    return f"dial_in:{registration_id}:r{revision}"


def _insert_ignore(rows: list[dict]) -> int:
    """Insert outbox rows; rows whose dedupe key exists already are skipped silently."""
    if not rows:
        return 0
    dialect = db.session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    now = utcnow()
    for row in rows:
        row.setdefault("status", "pending")
        row.setdefault("attempts", 0)
        row.setdefault("next_attempt_at", now)
        row.setdefault("last_error", "")
        row.setdefault("created_at", now)
    result = db.session.execute(
        insert(OutboxMessage).values(rows).on_conflict_do_nothing(index_elements=["dedupe_key"])
    )
    return max(result.rowcount or 0, 0)


def _dial_in_row(registration: Registration, event: Event, had_earlier: bool) -> dict:
    return {
        "kind": "dial_in_update" if had_earlier else "dial_in",
        "registration_id": registration.id,
        "event_id": event.id,
        "dedupe_key": dial_in_key(registration.id, event.dial_in_revision),
        "payload": {"revision": event.dial_in_revision},
    }


def _had_dial_in(registration_ids: list[int]) -> set[int]:
    if not registration_ids:
        return set()
    return set(
        db.session.scalars(
            select(OutboxMessage.registration_id).where(
                OutboxMessage.registration_id.in_(registration_ids),
                OutboxMessage.kind.in_(("dial_in", "dial_in_update")),
            )
        )
    )


def dial_in_if_due(registration: Registration, event: Event, now: datetime | None = None) -> None:
    """Someone confirmed online after the send time gets the details at once (invariant 4)."""
    now = now or utcnow()
    if (
        registration.status == RegistrationStatus.CONFIRMED
        and registration.attendance == Attendance.ONLINE
        and dial_in_due(event, now)
    ):
        had = registration.id in _had_dial_in([registration.id])
        _insert_ignore([_dial_in_row(registration, event, had)])


def schedule_due(now: datetime | None = None) -> int:
    """Create the outbox rows for every reminder and dial-in mail that is due. Returns how many
    rows were new. The caller commits."""
    now = now or utcnow()
    created = 0
    events = db.session.scalars(
        select(Event).where(Event.status == EventStatus.PUBLISHED, Event.ends_at > now)
    )
    for event in events:
        remind = reminder_at(event)
        if remind is not None and remind <= now < event.starts_at:
            confirmed = db.session.scalars(
                select(Registration).where(
                    Registration.event_id == event.id,
                    Registration.status == RegistrationStatus.CONFIRMED,
                    # Who signed up after the reminder time just had the confirmation.
                    Registration.confirmed_at < remind,
                )
            ).all()
            created += _insert_ignore(
                [
                    {
                        "kind": "reminder",
                        "registration_id": r.id,
                        "event_id": event.id,
                        "dedupe_key": f"reminder:{r.id}",
                    }
                    for r in confirmed
                ]
            )
        if dial_in_due(event, now):
            online = db.session.scalars(
                select(Registration).where(
                    Registration.event_id == event.id,
                    Registration.status == RegistrationStatus.CONFIRMED,
                    Registration.attendance == Attendance.ONLINE,
                )
            ).all()
            had = _had_dial_in([r.id for r in online])
            created += _insert_ignore([_dial_in_row(r, event, r.id in had) for r in online])
    return created
