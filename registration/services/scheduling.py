"""Scheduled mail: reminders and dial-in details become outbox rows when they are due.

``schedule_due`` may run every few seconds, late, twice or in several workers at once: each row
has a unique dedupe key and is inserted with ON CONFLICT DO NOTHING, so nobody gets a scheduled
mail twice, and a pass that runs late still creates what is due (DESIGN.md, "Data flow").
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, select

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
from . import outbox


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


def _queue_dial_in(event: Event, confirmed_online: Select[Any], now: datetime) -> int:
    """Queue the current dial-in details for those ``confirmed_online`` selects (ids and event
    ids): "dial_in" for whoever had none yet, "dial_in_update" for whoever had earlier ones;
    one key per person and revision. Returns how many rows were new."""
    had = (
        select(OutboxMessage.id)
        .where(
            OutboxMessage.registration_id == Registration.id,
            OutboxMessage.kind.in_(("dial_in", "dial_in_update")),
        )
        .exists()
    )
    revision = event.dial_in_revision
    created = 0
    for kind, who in (
        ("dial_in", confirmed_online.where(~had)),
        ("dial_in_update", confirmed_online.where(had)),
    ):
        created += outbox.enqueue_for_each(
            kind, who, f"r{revision}", key_prefix="dial_in", payload={"revision": revision},
            now=now,
        )  # fmt: skip
    return created


def dial_in_if_due(registration: Registration, event: Event, now: datetime | None = None) -> None:
    """Someone confirmed online after the send time gets the details at once (invariant 4)."""
    now = now or utcnow()
    if (
        registration.status == RegistrationStatus.CONFIRMED
        and registration.attendance == Attendance.ONLINE
        and dial_in_due(event, now)
    ):
        db.session.flush()
        one = select(Registration.id, Registration.event_id).where(
            Registration.id == registration.id
        )
        _queue_dial_in(event, one, now)


def schedule_due(now: datetime | None = None) -> int:
    """Create the outbox rows for every reminder and dial-in mail that is due. Returns how many
    rows were new. The caller commits.

    Each kind for each event is one INSERT ... SELECT, so any number of participants falls due
    in a bounded statement (a list of rows would outgrow the database's parameter limit)."""
    now = now or utcnow()
    created = 0
    events = db.session.scalars(
        select(Event).where(Event.status == EventStatus.PUBLISHED, Event.ends_at > now)
    ).all()
    for event in events:
        confirmed = select(Registration.id, Registration.event_id).where(
            Registration.event_id == event.id,
            Registration.status == RegistrationStatus.CONFIRMED,
        )
        remind = reminder_at(event)
        if remind is not None and remind <= now < event.starts_at:
            # Who signed up after the reminder time just had the confirmation.
            created += outbox.enqueue_for_each(
                "reminder", confirmed.where(Registration.confirmed_at < remind), None, now=now
            )
        if dial_in_due(event, now):
            online = confirmed.where(Registration.attendance == Attendance.ONLINE)
            created += _queue_dial_in(event, online, now)
    return created
