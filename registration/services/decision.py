"""A sign-up's seat decision, made by the database under the event lock.

Whether a sign-up gets a seat, a place on the waiting list or a refusal depends on what is
committed when its event's lock is granted, so the decision is a query (:data:`DECISION`) run
right after the lock, on both databases: it reads the event row and counts the registrations
with a snapshot taken after the lock, and returns the outcome with the values it was based on.
The rules are the seats policy's (the hybrids on Event and services/seats.py), composed
here into one query; the order of the checks (closed, attendance, duplicate, seat, waiting list)
is this module's.

On PostgreSQL :data:`DECIDE_AND_INSERT` goes further: the same decision, the registration's
INSERT and its first email in one statement, which signup.register() sends together with the
lock (and usually the COMMIT) in one round trip. The lock is then held only while the server
works, not while the app process waits for the answer and for its turn on the CPU: every
sign-up for the event queues for that lock (see bench/load_test.py).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any, NamedTuple

from sqlalchemy import (
    Boolean,
    ScalarSelect,
    Select,
    String,
    bindparam,
    case,
    exists,
    func,
    insert,
    not_,
    or_,
    select,
    true,
)

from ..database import UTCDateTime
from ..models import (
    Event,
    Registration,
    RegistrationStatus,
)
from . import outbox, seats


class Outcome(enum.StrEnum):
    """What :data:`DECISION` decided."""

    CONFIRMED = "confirmed"
    WAITLISTED = "waitlisted"
    #: Sign-ups are not accepted (status, window; organisers: cancelled events only).
    CLOSED = "closed"
    #: The chosen attendance mode is not offered (any more).
    ATTENDANCE = "attendance"
    #: The address has an active registration for the event.
    DUPLICATE = "duplicate"
    #: No seat and no waiting list.
    FULL = "full"


ACCEPTED = (Outcome.CONFIRMED, Outcome.WAITLISTED)


class Decided(NamedTuple):
    """What a sign-up's decision (and, when accepted, its INSERT) gave."""

    outcome: Outcome
    #: Waiting in the chosen mode before this sign-up (its position is one more).
    waiting: int
    #: The values of :data:`EVENT_COLUMNS` as decided on.
    event_values: tuple[Any, ...]
    #: The new registration, ``None`` when refused (nothing written).
    registration_id: int | None

    @classmethod
    def of(cls, row: Sequence[Any], registration_id: int | None) -> Decided:
        """From a row of :data:`DECISION` (outcome, confirmed, waiting, last order, event)."""
        return cls(Outcome(row[0]), row[2], tuple(row[4:]), registration_id)


_EVENTS = Event.__table__
_REGISTRATIONS = Registration.__table__

#: The event's columns the decision (and what follows it in a sign-up) reads. They come back
#: with the outcome, so that the caller's event object reflects the row as it was decided on.
_EVENT_COLUMN_NAMES = (
    "status", "format", "capacity_on_site", "capacity_online", "waitlist_enabled",
    "registration_opens_at", "registration_closes_at", "starts_at", "ends_at",
    "dial_in_url", "dial_in_meeting_id", "dial_in_phone", "dial_in_hours_before",
    "dial_in_revision",
)  # fmt: skip
EVENT_COLUMNS = tuple(_EVENTS.c[name] for name in _EVENT_COLUMN_NAMES)

# The parameters of the decision.
_EVENT_ID = bindparam("event_id", type_=_EVENTS.c.id.type)
_EMAIL_KEY = bindparam("email_key", type_=String)
#: The attendance mode resolved before the lock, and whether the participant chose it.
_MODE = bindparam("mode", type_=String)
_MODE_CHOSEN = bindparam("mode_chosen", type_=Boolean)
_NOW = bindparam("now", type_=UTCDateTime())
#: A phone sign-up entered by an organiser: the sign-up window does not apply.
_BY_ORGANISER = bindparam("by_organiser", type_=Boolean)
#: An organiser's explicit decision to confirm past capacity.
_OVER_CAPACITY = bindparam("over_capacity", type_=Boolean)

_OF_EVENT = _REGISTRATIONS.c.event_id == _EVENT_ID


def _in_mode(status: RegistrationStatus) -> ScalarSelect[int]:
    # Matches the index on (event_id, status, attendance).
    return (
        select(func.count())
        .where(_OF_EVENT, _REGISTRATIONS.c.status == status, seats.in_mode(_MODE))
        .scalar_subquery()
    )


# Each count on its own index, not one pass over all of the event's registrations: the query
# runs under the event lock.
_COUNTS = select(
    _in_mode(RegistrationStatus.CONFIRMED).label("confirmed"),
    _in_mode(RegistrationStatus.WAITLISTED).label("waiting"),
    seats.last_waitlist_order(_EVENT_ID).scalar_subquery().label("last_order"),
    # Registration.is_active is the condition of the partial unique index on
    # (event_id, email_key), which answers this.
    exists()
    .where(_OF_EVENT, _REGISTRATIONS.c.email_key == _EMAIL_KEY, Registration.is_active)
    .label("duplicate"),
).subquery("counts")

# The seats policy's rules (the hybrids on Event, services/seats.py), as SQL.
_OPEN = Event.accepts_signups_at(_NOW, _BY_ORGANISER)
_OFFERED = Event.offers(_MODE, _MODE_CHOSEN)
_CAPACITY = Event.capacity_for(_MODE)
_OUTCOME = case(
    (not_(_OPEN), Outcome.CLOSED.value),
    (not_(_OFFERED), Outcome.ATTENDANCE.value),
    (_COUNTS.c.duplicate, Outcome.DUPLICATE.value),
    (
        or_(_OVER_CAPACITY, seats.seat_left_sql(_CAPACITY, _COUNTS.c.confirmed)),
        Outcome.CONFIRMED.value,
    ),
    (_EVENTS.c.waitlist_enabled, Outcome.WAITLISTED.value),
    else_=Outcome.FULL.value,
)

#: The decision: outcome, confirmed and waiting in the mode, the event's highest waitlist order
#: (0: none), then :data:`EVENT_COLUMNS`. Run it after taking the event lock, as a statement of
#: its own (its snapshot must be younger than the lock).
DECISION = (
    select(
        _OUTCOME.label("outcome"),
        _COUNTS.c.confirmed,
        _COUNTS.c.waiting,
        _COUNTS.c.last_order,
        *EVENT_COLUMNS,
    )
    .select_from(_EVENTS.join(_COUNTS, true()))
    .where(_EVENTS.c.id == _EVENT_ID)
)

#: The lock itself (PostgreSQL; SQLite transactions hold the write lock from their start).
LOCK = select(_EVENTS.c.id).where(_EVENTS.c.id == _EVENT_ID).with_for_update()

#: The registration's columns that do not depend on the decision (parameters ``new_<column>``).
NEW_COLUMNS = (
    "event_id", "email", "email_key", "first_name", "last_name", "organisation", "language",
    "privacy_consent_at", "created_at", "token_salt", "manage_token_hash", "attendance",
    "idempotency_key", "idempotency_hash",
)  # fmt: skip


def _decide_and_insert() -> Select[Any]:
    decision = DECISION.cte("decision")
    outcome = decision.c.outcome
    accepted = or_(*(outcome == o.value for o in ACCEPTED))
    new_registration = (
        insert(_REGISTRATIONS)
        .from_select(
            [*NEW_COLUMNS, "status", "waitlist_order", "confirmed_at"],
            select(
                *(
                    bindparam(f"new_{name}", type_=_REGISTRATIONS.c[name].type)
                    for name in NEW_COLUMNS
                ),
                outcome,
                # Behind everyone who waits for the event: above every order it has.
                case((outcome == Outcome.WAITLISTED.value, decision.c.last_order + 1)),
                case((outcome == Outcome.CONFIRMED.value, _NOW)),
            ).where(accepted),
            include_defaults=False,
        )
        .returning(_REGISTRATIONS.c.id, _REGISTRATIONS.c.event_id, _REGISTRATIONS.c.status)
        .cte("new_registration")
    )
    first_mail = outbox.with_first_mail(
        new_registration,
        case(
            (new_registration.c.status == RegistrationStatus.CONFIRMED, "confirmation"),
            else_="waitlisted",
        ),
    ).cte("first_mail")
    return (
        select(*decision.c, new_registration.c.id.label("registration_id"))
        .select_from(decision.outerjoin(new_registration, true()))
        .add_cte(first_mail)
    )


#: PostgreSQL: :data:`DECISION`'s columns and the new registration's id (``None`` when refused),
#: after inserting the registration (status, waitlist order, confirmation time as decided) and
#: queueing its first email (outbox.with_first_mail). Parameters: the decision's and
#: ``new_<column>`` for :data:`NEW_COLUMNS`, ``queued_at``.
DECIDE_AND_INSERT = _decide_and_insert()
