"""Seat counts for display (event list, event page, API), one query for many events."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import func, select

from ..extensions import db
from ..models import Attendance, Event, Registration, RegistrationStatus


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
        return self.available == 0


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
