"""The seats policy: who gets a seat, who waits, in which order.

The event's rules (attendance modes offered, capacity per mode, the sign-up window) are hybrids
on :class:`~registration.models.Event` (``offers``, ``capacity_for``, ``is_open_at``,
``accepts_signups_at``): written once, usable on an object and in a query. This module builds
the rest on them, again once for SQL and Python:

- a :class:`SeatPool` is seats with their own capacity and waiting list; today an event's
  attendance mode (:func:`pool`), later a programme part would be one more kind of pool (its own
  capacity and membership filter), not a copy of these rules;
- :func:`seat_left` / :func:`seat_left_sql`: "a seat is left" for a capacity and a count;
- :data:`WAITLIST_ORDER`: the waiting list's order (first come, first served, DESIGN.md 2);
- :func:`waitlist_rank`: the position on a waiting list, computed in one place, for one
  registration, a whole event (:func:`waitlist_positions`) or an export;
- :func:`seat_status`: seat counts for display, one query for many events.

services/decision.py composes these expressions into the sign-up's one statement; signup.py
(promotion, switching), the pages, the exports and the API use the Python side.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, func, or_, select

from ..extensions import db
from ..models import Attendance, Event, Registration, RegistrationStatus

# --- the rules -------------------------------------------------------------------------------


def seat_left(capacity: int | None, confirmed: int) -> bool:
    """Whether a pool with ``capacity`` (``None``: unlimited) and ``confirmed`` seats taken
    has a seat left. Twin of :func:`seat_left_sql`."""
    return capacity is None or confirmed < capacity


def seat_left_sql(capacity: Any, confirmed: Any) -> ColumnElement[bool]:
    """:func:`seat_left` as SQL."""
    return or_(capacity.is_(None), confirmed < capacity)


#: The waiting list's order, first come first served: the registration's place in its event's
#: one waitlist sequence (unique per event, so there are no ties). Every ordering of a waiting
#: list and every position (:func:`waitlist_rank`) uses it.
WAITLIST_ORDER = Registration.waitlist_order


def in_mode(mode: Any) -> ColumnElement[bool]:
    """The registrations that draw on the seats of attendance mode ``mode`` (a value or a bound
    parameter); the event condition is the caller's."""
    return Registration.attendance == mode


def last_waitlist_order(event_id: Any) -> Select[Any]:
    """The event's highest waitlist order (0: none yet); a new waiting participant gets the
    next one, whichever mode they wait for (the unique index answers it with its last entry)."""
    return select(func.coalesce(func.max(Registration.waitlist_order), 0)).where(
        Registration.event_id == event_id
    )


# --- pools -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SeatPool:
    """Seats with their own capacity and waiting list.

    ``members`` selects the registrations that draw on this pool (an event's mode: its
    registrations in that mode). Everything else (counts, free seats, who is promoted next,
    positions) follows from it and the capacity. A programme part with its own seats would be a
    pool with its own ``members`` filter and capacity.
    """

    event_id: int
    #: ``None`` means unlimited.
    capacity: int | None
    #: Which registrations of the event draw on this pool (SQL).
    members: ColumnElement[bool]

    def _of_pool(self, status: RegistrationStatus) -> ColumnElement[bool]:
        return and_(
            Registration.event_id == self.event_id, self.members, Registration.status == status
        )

    def count(self, status: RegistrationStatus) -> int:
        return db.session.scalar(
            select(func.count()).select_from(Registration).where(self._of_pool(status))
        )

    def confirmed(self) -> int:
        return self.count(RegistrationStatus.CONFIRMED)

    def waitlisted(self) -> int:
        return self.count(RegistrationStatus.WAITLISTED)

    def has_seat(self) -> bool:
        return seat_left(self.capacity, self.confirmed())

    def free(self) -> int | None:
        """Seats left (``None``: unlimited)."""
        if self.capacity is None:
            return None
        return max(self.capacity - self.confirmed(), 0)

    def waiting(self, limit: int | None = None) -> list[Registration]:
        """The first ``limit`` (all: ``None``) waiting registrations, in waitlist order."""
        stmt = (
            select(Registration)
            .where(self._of_pool(RegistrationStatus.WAITLISTED))
            .order_by(WAITLIST_ORDER)
        )
        if limit is not None:
            stmt = stmt.limit(limit)
        return list(db.session.scalars(stmt))

    def next_to_promote(self) -> list[Registration]:
        """Those who get the free seats now: the earliest waiting, as many as seats are free."""
        free = self.free()
        if free == 0:
            return []
        return self.waiting(free)


def pool(event: Event, mode: Attendance | str) -> SeatPool:
    """The seats of ``event``'s attendance mode ``mode``."""
    return SeatPool(event.id, event.capacity_for(mode), in_mode(mode))


# --- waiting-list positions ------------------------------------------------------------------


def waitlist_rank(pool_key: Any = Registration.attendance) -> ColumnElement[int]:
    """A waiting registration's 1-based position within its pool (DESIGN.md 2: first come,
    first served per mode), as a column of a query over registrations whose conditions keep or
    drop each pool's waiting list whole (event, status, mode); meaningless for other statuses.
    ``pool_key`` tells the pools apart: the attendance mode for an event's seats (a programme
    part's pools would pass the part). :func:`waitlist_positions` and the exports use it."""
    return func.row_number().over(
        partition_by=(Registration.event_id, Registration.status, pool_key),
        order_by=WAITLIST_ORDER,
    )


def waitlist_positions(
    event_id: int, registration_ids: Sequence[int] | None = None
) -> dict[int, int]:
    """The waiting-list positions (:func:`waitlist_rank`) of the event's waiting
    registrations, by registration id: all of them, or those in ``registration_ids``. Pages,
    mails and the API take positions from here."""
    ranked = (
        select(Registration.id, waitlist_rank().label("position"))
        .where(
            Registration.event_id == event_id,
            Registration.status == RegistrationStatus.WAITLISTED,
        )
        .subquery()
    )
    stmt = select(ranked.c.id, ranked.c.position)
    if registration_ids is not None:
        stmt = stmt.where(ranked.c.id.in_(registration_ids))
    return {row.id: row.position for row in db.session.execute(stmt)}


def waitlist_position(registration: Registration) -> int | None:
    """``registration``'s 1-based position among those waiting for the same mode, or
    ``None`` when it is not waiting."""
    if registration.status != RegistrationStatus.WAITLISTED:
        return None
    return waitlist_positions(registration.event_id, [registration.id]).get(registration.id)


# --- display ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SeatStatus:
    mode: Attendance
    capacity: int | None
    confirmed: int
    waitlisted: int

    @property
    def available(self) -> int | None:
        """Seats left; ``None`` when unlimited."""
        if self.capacity is None:
            return None
        return max(self.capacity - self.confirmed, 0)

    @property
    def is_full(self) -> bool:
        return not seat_left(self.capacity, self.confirmed)


def seat_status(events: Iterable[Event]) -> dict[int, dict[Attendance, SeatStatus]]:
    """For each event id, the :class:`SeatStatus` of every mode the event offers."""
    events = list(events)
    counts: Counter[tuple[int, str, str]] = Counter()
    if events:
        rows = db.session.execute(
            select(
                Registration.event_id,
                Registration.attendance,
                Registration.status,
                func.count(),
            )
            .where(
                Registration.event_id.in_([e.id for e in events]),
                Registration.status != RegistrationStatus.CANCELLED,
            )
            .group_by(Registration.event_id, Registration.attendance, Registration.status)
        )
        for event_id, mode, status, n in rows:
            counts[(event_id, mode, status)] = n
    return {
        event.id: {
            mode: SeatStatus(
                mode=mode,
                capacity=event.capacity_for(mode),
                confirmed=counts[(event.id, mode, RegistrationStatus.CONFIRMED)],
                waitlisted=counts[(event.id, mode, RegistrationStatus.WAITLISTED)],
            )
            for mode in event.modes
        }
        for event in events
    }
