"""The audit log: who did what and when (DESIGN.md invariant 7: every export is logged)."""

from __future__ import annotations

from typing import Any

from ..extensions import db
from ..models import AuditEntry, Event, Organiser
from ..timeutil import utcnow


def record(
    actor: Organiser | None,
    action: str,
    *,
    event: Event | None = None,
    subject: str = "",
    details: dict[str, Any] | None = None,
) -> AuditEntry:
    """Add an entry to the caller's transaction (it commits with the change it describes)."""
    entry = AuditEntry(
        created_at=utcnow(),
        actor_id=actor.id if actor is not None else None,
        actor_email=actor.email if actor is not None else "",
        event_id=event.id if event is not None else None,
        action=action,
        subject=subject,
        details=details,
    )
    db.session.add(entry)
    return entry
