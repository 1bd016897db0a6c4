"""The seats policy (models.Event's hybrids, services/seats.py): each rule's SQL form agrees with
its Python twin, and waiting-list positions come from one place."""

from __future__ import annotations

from datetime import timedelta
from itertools import product

from sqlalchemy import select

from registration.extensions import db
from registration.models import (
    Attendance,
    Event,
    EventFormat,
    EventStatus,
    Registration,
    RegistrationStatus,
)
from registration.services import seats, signup
from registration.timeutil import utcnow

from .conftest import make_event
from .test_signup_service import register


def _sql(expression):
    """``expression`` evaluated by the database for the event row with slug ``grid``."""
    return db.session.scalar(select(expression).where(Event.slug == "grid"))


def test_the_rules_agree_in_sql_and_python_with_plain_values(app):
    """The decision passes bound parameters; queries may pass plain values (which must become
    SQL literals, not be compared by Python)."""
    now = utcnow()
    event = make_event(slug="grid", capacity_online=4)
    windows = [(None, None), (2, None), (-2, 5), (None, -1)]
    for status, fmt, (opens, closes), after_start in product(
        EventStatus, EventFormat, windows, (False, True)
    ):
        event.status, event.format = status, fmt
        event.capacity_on_site = 0 if fmt == EventFormat.HYBRID else None
        event.registration_opens_at = None if opens is None else now + timedelta(hours=opens)
        event.registration_closes_at = None if closes is None else now + timedelta(hours=closes)
        event.starts_at = now + timedelta(hours=-1 if after_start else 3)
        event.ends_at = event.starts_at + timedelta(hours=2)
        db.session.commit()
        case = (status, fmt, opens, closes, after_start)
        assert _sql(Event.is_open_at(now)) == event.is_open_at(now), case
        assert _sql(Event.closes_at) == event.closes_at, case
        for by_organiser in (False, True):
            assert _sql(Event.accepts_signups_at(now, by_organiser)) == (
                event.accepts_signups_at(now, by_organiser)
            ), case
        for mode, chosen in product(Attendance, (False, True)):
            assert _sql(Event.offers(mode, chosen)) == event.offers(mode, chosen), case
            assert _sql(Event.capacity_for(mode)) == event.capacity_for(mode), case
            assert (mode in event.modes and (chosen or len(event.modes) == 1)) == event.offers(
                mode, chosen
            ), case


def test_the_hybrids_filter_events_in_queries(app):
    now = utcnow()
    make_event(slug="open")
    make_event(slug="draft", status=EventStatus.DRAFT)
    make_event(slug="closed", registration_closes_at=now - timedelta(hours=1))
    make_event(slug="later", registration_opens_at=now + timedelta(hours=1))
    make_event(slug="full", capacity_on_site=0)
    open_slugs = set(db.session.scalars(select(Event.slug).where(Event.is_open_at(now))))
    assert open_slugs == {"open", "full"}
    unlimited = set(
        db.session.scalars(
            select(Event.slug).where(Event.capacity_for(Attendance.ONLINE).is_(None))
        )
    )
    assert unlimited == {"open", "draft", "closed", "later", "full"}


def test_seat_left_twins():
    for capacity, confirmed in product((None, 0, 1, 2), (0, 1, 2, 3)):
        expected = capacity is None or confirmed < capacity
        assert seats.seat_left(capacity, confirmed) == expected


def test_waitlist_positions_are_per_mode_in_order_of_joining(app):
    event = make_event(format=EventFormat.HYBRID, capacity_on_site=1, capacity_online=1)
    modes = ["on_site", "online", "on_site", "online", "on_site", "online", "on_site"]
    results = [register(event, n, attendance=m) for n, m in enumerate(modes)]
    waiting = [r for r in results if r.status == RegistrationStatus.WAITLISTED]
    assert [r.waitlist_position for r in waiting] == [1, 1, 2, 2, 3]
    everyone = seats.waitlist_positions(event.id)
    assert everyone == {r.registration_id: r.waitlist_position for r in waiting}
    for r in results:  # one registration: the same function, the same answer
        assert signup.waitlist_position(r.registration) == everyone.get(r.registration_id)
    # The first on-site seat is freed: the first waiting on site is promoted, the rest move up.
    signup.cancel(results[0].registration)
    db.session.commit()
    after = seats.waitlist_positions(event.id)
    assert waiting[0].registration_id not in after
    assert [after[r.registration_id] for r in waiting[1:]] == [1, 1, 2, 2]
    assert seats.waitlist_positions(event.id, [waiting[-1].registration_id]) == {
        waiting[-1].registration_id: 2
    }


def test_a_pool_counts_promotes_and_orders_its_own_registrations(app):
    event = make_event(format=EventFormat.HYBRID, capacity_on_site=1, capacity_online=None)
    for n, mode in enumerate(["on_site", "on_site", "online", "on_site"]):
        register(event, n, attendance=mode)
    on_site = seats.pool(event, Attendance.ON_SITE)
    online = seats.pool(event, Attendance.ONLINE)
    assert (on_site.confirmed(), on_site.waitlisted(), on_site.free()) == (1, 2, 0)
    assert (online.confirmed(), online.waitlisted(), online.free()) == (1, 0, None)
    assert not on_site.has_seat() and online.has_seat()
    assert on_site.next_to_promote() == []
    event.capacity_on_site = 2
    db.session.commit()
    first, second = seats.pool(event, Attendance.ON_SITE).waiting()
    assert first.waitlist_order < second.waitlist_order
    assert seats.pool(event, Attendance.ON_SITE).next_to_promote() == [first]
    assert signup.promote_all(event) == [first]


def test_is_active_agrees_in_sql_and_python(app):
    """The duplicate check and find_active use the SQL form, the pages the Python one."""
    event = make_event(capacity_on_site=1)
    results = [register(event, n) for n in range(3)]  # confirmed, waitlisted, waitlisted
    signup.cancel(results[2].registration)
    db.session.commit()
    rows = db.session.execute(select(Registration.id, Registration.is_active)).all()
    assert len(rows) == 3
    for registration_id, active in rows:
        registration = db.session.get_one(Registration, registration_id)
        assert active == registration.is_active
    assert sorted(active for _, active in rows) == [False, True, True]
