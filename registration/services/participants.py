"""An organiser's changes to participants (back office, API, CLI): each call validates, tells
the participant through the outbox, writes the audit entry and commits, so every entry point has
the same effects. The rules themselves live in :mod:`.signup` (seats, waiting list)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sqlalchemy import ColumnElement, func, or_

from ..extensions import db
from ..models import Event, Organiser, Registration
from . import audit, signup
from .errors import ServiceError


@contextmanager
def _transaction() -> Iterator[None]:
    """Commit what the block wrote; roll it back when a domain error leaves the block."""
    try:
        yield
        db.session.commit()
    except ServiceError:
        db.session.rollback()
        raise


#: How a participant's own change (through their personal link) shows in the audit log.
BY_PARTICIPANT = {"via": "participant"}


def search(query: str) -> ColumnElement[bool]:
    """Registrations whose name, organisation or address contains ``query`` (any case): the
    search of the participant list and of the check-in at the door."""
    like = f"%{query.strip().lower()}%"
    return or_(
        func.lower(Registration.first_name).like(like),
        func.lower(Registration.last_name).like(like),
        func.lower(Registration.organisation).like(like),
        Registration.email_key.like(like),
    )


def _subject(registration: Registration) -> str:
    return f"registration:{registration.id}"


def add(
    event: Event,
    data: signup.SignupData,
    *,
    actor: Organiser | None,
    over_capacity: bool = False,
    via: Mapping[str, Any] | None = None,
) -> Registration:
    """A sign-up taken by an organiser (by phone, on paper): the sign-up window does not apply,
    and ``over_capacity`` confirms past the capacity. Raises the sign-up's errors; nothing is
    written then."""
    with _transaction():
        result = signup.register(event, data, by_organiser=True, over_capacity=over_capacity)
        registration = result.registration
        audit.record(
            actor, "participant.add", event=event, subject=_subject(registration),
            details={**(via or {}), "over_capacity": over_capacity},
        )  # fmt: skip
    signup.add_checkin_qr(result)
    return registration


def edit(
    registration: Registration,
    *,
    actor: Organiser | None,
    email: str,
    first_name: str,
    last_name: str,
    organisation: str,
    via: Mapping[str, Any] | None = None,
) -> Registration:
    """Correct a participant's details; the address stays unique per event."""
    with _transaction():
        registration = signup.update_details(
            registration, email=email, first_name=first_name, last_name=last_name,
            organisation=organisation,
        )  # fmt: skip
        audit.record(
            actor, "participant.edit", event=registration.event, subject=_subject(registration),
            details=dict(via or {}) or None,
        )  # fmt: skip
    return registration


def cancel(
    registration: Registration,
    *,
    actor: Organiser | None,
    via: Mapping[str, Any] | None = None,
) -> list[Registration]:
    """Cancel a registration for the participant (who is told); a freed seat goes to the first
    person waiting in that mode. Returns those promoted."""
    with _transaction():
        promoted = signup.cancel(registration)
        audit.record(
            actor, "participant.cancel", event=registration.event,
            subject=_subject(registration),
            details={**(via or {}), "promoted": [r.id for r in promoted]},
        )  # fmt: skip
    return promoted


def confirm_anyway(
    registration: Registration,
    *,
    actor: Organiser | None,
    via: Mapping[str, Any] | None = None,
) -> Registration:
    """Give a waiting person a seat although the mode is full (an organiser's explicit
    decision)."""
    with _transaction():
        registration = signup.confirm_anyway(registration)
        audit.record(
            actor, "participant.confirm_over_capacity", event=registration.event,
            subject=_subject(registration), details=dict(via or {}) or None,
        )  # fmt: skip
    return registration
