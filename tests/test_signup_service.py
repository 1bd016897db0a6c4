"""The sign-up rules, tested on the services without HTTP (DESIGN.md invariants 1, 2, 3, 6, 8)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from registration.extensions import db
from registration.models import (
    Attendance,
    EventFormat,
    EventStatus,
    OutboxMessage,
    Registration,
    RegistrationStatus,
)
from registration.services import signup
from registration.services.errors import (
    DuplicateRegistration,
    EventFull,
    InvalidInput,
    ModeFull,
    NotActive,
    RegistrationClosed,
)
from registration.timeutil import utcnow

from .conftest import make_event


def data(n: int | str = 1, **overrides: object) -> signup.SignupData:
    values: dict[str, object] = {
        "email": f"person{n}@example.org",
        "first_name": "Erika",
        "last_name": f"Muster{n}",
        "organisation": "Stadt Jena",
        "privacy_consent": True,
    }
    values.update(overrides)
    return signup.SignupData(**values)  # type: ignore[arg-type]


def register(event, n=1, **overrides):
    result = signup.register(event, data(n, **overrides))
    db.session.commit()
    return result


def outbox_kinds(registration: Registration) -> list[str]:
    return list(
        db.session.scalars(
            select(OutboxMessage.kind)
            .where(OutboxMessage.registration_id == registration.id)
            .order_by(OutboxMessage.id)
        )
    )


def count(status: RegistrationStatus, mode: Attendance | None = None) -> int:
    stmt = select(func.count()).select_from(Registration).where(Registration.status == status)
    if mode is not None:
        stmt = stmt.where(Registration.attendance == mode)
    return db.session.scalar(stmt)


def test_confirmed_while_seats_left_then_waitlisted_in_order(app):
    event = make_event(capacity_on_site=2)
    first, second = register(event, 1), register(event, 2)
    assert first.registration.status == second.registration.status == RegistrationStatus.CONFIRMED
    assert first.waitlist_position is None

    waiting = [register(event, n) for n in range(3, 6)]
    assert [w.registration.status for w in waiting] == [RegistrationStatus.WAITLISTED] * 3
    assert [w.waitlist_position for w in waiting] == [1, 2, 3]
    assert count(RegistrationStatus.CONFIRMED) == 2


def test_each_state_change_writes_its_email_in_the_same_transaction(app):
    event = make_event(capacity_on_site=1)
    confirmed = register(event, 1).registration
    waiting = register(event, 2).registration
    assert outbox_kinds(confirmed) == ["confirmation"]
    assert outbox_kinds(waiting) == ["waitlisted"]


def test_unlimited_capacity_never_waitlists(app):
    event = make_event(capacity_on_site=None)
    results = [register(event, n) for n in range(30)]
    assert {r.registration.status for r in results} == {RegistrationStatus.CONFIRMED}


def test_full_without_waiting_list_is_refused_and_writes_nothing(app):
    event = make_event(capacity_on_site=1, waitlist_enabled=False)
    register(event, 1)
    with pytest.raises(EventFull):
        signup.register(event, data(2))
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(Registration)) == 1
    assert db.session.scalar(select(func.count()).select_from(OutboxMessage)) == 1


def test_zero_capacity_goes_straight_to_the_waiting_list(app):
    event = make_event(capacity_on_site=0)
    assert register(event, 1).registration.status == RegistrationStatus.WAITLISTED


@pytest.mark.parametrize(
    "email", ["Person1@Example.org", "PERSON1@EXAMPLE.ORG", " person1@example.org "]
)
def test_one_active_registration_per_address_case_insensitive(app, email):
    event = make_event()
    register(event, 1)
    with pytest.raises(DuplicateRegistration):
        signup.register(event, data(1, email=email))


def test_after_cancelling_the_same_address_may_sign_up_again(app):
    event = make_event()
    first = register(event, 1).registration
    signup.cancel(first)
    db.session.commit()
    again = register(event, 1).registration
    assert again.id != first.id
    assert again.status == RegistrationStatus.CONFIRMED


def test_the_same_address_may_register_for_two_events(app):
    register(make_event(slug="a"), 1)
    assert register(make_event(slug="b"), 1).registration.status == RegistrationStatus.CONFIRMED


def test_the_database_refuses_a_second_active_registration(app):
    """The partial unique index backs the service check up (invariant 6)."""
    from sqlalchemy.exc import IntegrityError

    event = make_event()
    first = register(event, 1).registration
    clone = Registration(
        event_id=event.id, email="X@example.org", email_key=first.email_key, first_name="A",
        last_name="B", attendance=Attendance.ON_SITE, status=RegistrationStatus.WAITLISTED,
        waitlist_order=99, privacy_consent_at=utcnow(), token_salt="0" * 32,
        manage_token_hash="f" * 64,
    )  # fmt: skip
    db.session.add(clone)
    with pytest.raises(IntegrityError) as caught:
        db.session.commit()
    db.session.rollback()
    assert signup._is_duplicate_email(caught.value)


def test_consent_is_required(app):
    event = make_event()
    with pytest.raises(InvalidInput) as caught:
        signup.register(event, data(1, privacy_consent=False))
    assert "privacy_consent" in caught.value.errors


@pytest.mark.parametrize(
    ("changes", "moment_offset"),
    [
        ({"status": EventStatus.DRAFT}, None),
        ({"status": EventStatus.CANCELLED}, None),
        ({"registration_opens_at_days": 1}, None),
        ({"registration_closes_at_days": -1}, None),
        ({}, "after_start"),
    ],
)
def test_closed_events_take_no_sign_ups(app, changes, moment_offset):
    now = utcnow()
    overrides = {k: v for k, v in changes.items() if not k.endswith("_days")}
    if "registration_opens_at_days" in changes:
        overrides["registration_opens_at"] = now + timedelta(
            days=changes["registration_opens_at_days"]
        )
    if "registration_closes_at_days" in changes:
        overrides["registration_closes_at"] = now + timedelta(
            days=changes["registration_closes_at_days"]
        )
    event = make_event(**overrides)
    moment = event.starts_at + timedelta(minutes=1) if moment_offset == "after_start" else now
    with pytest.raises(RegistrationClosed):
        signup.register(event, data(1), now=moment)


def test_registration_window_open(app):
    now = utcnow()
    event = make_event(
        registration_opens_at=now - timedelta(days=1),
        registration_closes_at=now + timedelta(days=1),
    )
    assert register(event, 1).registration.status == RegistrationStatus.CONFIRMED


def test_attendance_is_fixed_by_single_mode_events(app):
    on_site = make_event(slug="on-site", format=EventFormat.ON_SITE)
    online = make_event(slug="online", format=EventFormat.ONLINE, capacity_online=5)
    assert register(on_site, 1).registration.attendance == Attendance.ON_SITE
    assert register(online, 1).registration.attendance == Attendance.ONLINE
    with pytest.raises(InvalidInput) as caught:
        signup.register(on_site, data(2, attendance="online"))
    assert "attendance" in caught.value.errors


def test_hybrid_events_need_a_mode(app):
    event = make_event(format=EventFormat.HYBRID, capacity_online=5)
    with pytest.raises(InvalidInput) as caught:
        signup.register(event, data(1))
    assert "attendance" in caught.value.errors
    assert register(event, 1, attendance="online").registration.attendance == Attendance.ONLINE


def test_capacity_and_waiting_list_are_per_mode(app):
    event = make_event(format=EventFormat.HYBRID, capacity_on_site=1, capacity_online=2)
    assert register(event, 1, attendance="on_site").registration.status == "confirmed"
    assert register(event, 2, attendance="on_site").registration.status == "waitlisted"
    assert register(event, 3, attendance="online").registration.status == "confirmed"
    assert register(event, 4, attendance="online").registration.status == "confirmed"
    online_waiting = register(event, 5, attendance="online")
    assert online_waiting.registration.status == "waitlisted"
    assert online_waiting.waitlist_position == 1  # positions count within the mode


def test_cancelling_a_seat_promotes_the_earliest_waiting_person_and_tells_them(app):
    event = make_event(capacity_on_site=1)
    seat = register(event, 1).registration
    first_waiting = register(event, 2).registration
    second_waiting = register(event, 3).registration

    promoted = signup.cancel(seat)
    db.session.commit()

    assert [r.id for r in promoted] == [first_waiting.id]
    assert first_waiting.status == RegistrationStatus.CONFIRMED
    assert first_waiting.confirmed_at is not None
    assert second_waiting.status == RegistrationStatus.WAITLISTED
    assert signup.waitlist_position(second_waiting) == 1
    assert outbox_kinds(seat) == ["confirmation", "cancellation"]
    assert outbox_kinds(first_waiting) == ["waitlisted", "promoted"]


def test_cancelling_a_waiting_place_promotes_nobody(app):
    event = make_event(capacity_on_site=1)
    register(event, 1)
    waiting = register(event, 2).registration
    third = register(event, 3).registration
    assert signup.cancel(waiting) == []
    db.session.commit()
    assert third.status == RegistrationStatus.WAITLISTED
    assert signup.waitlist_position(third) == 1


def test_cancelling_twice_changes_nothing_the_second_time(app):
    event = make_event()
    registration = register(event, 1).registration
    signup.cancel(registration)
    db.session.commit()
    signup.cancel(registration)
    db.session.commit()
    assert outbox_kinds(registration) == ["confirmation", "cancellation"]


def test_promotion_stays_within_the_mode(app):
    event = make_event(format=EventFormat.HYBRID, capacity_on_site=1, capacity_online=1)
    on_site = register(event, 1, attendance="on_site").registration
    register(event, 2, attendance="online")
    online_waiting = register(event, 3, attendance="online").registration
    on_site_waiting = register(event, 4, attendance="on_site").registration
    signup.cancel(on_site)
    db.session.commit()
    assert on_site_waiting.status == RegistrationStatus.CONFIRMED
    assert online_waiting.status == RegistrationStatus.WAITLISTED


def test_raising_capacity_promotes_in_order(app):
    event = make_event(capacity_on_site=1)
    register(event, 1)
    waiting = [register(event, n).registration for n in range(2, 6)]
    locked = signup.lock_event(event.id)
    locked.capacity_on_site = 3
    promoted = signup.promote_all(locked)
    db.session.commit()
    assert [r.id for r in promoted] == [waiting[0].id, waiting[1].id]
    assert [r.status for r in waiting] == ["confirmed", "confirmed", "waitlisted", "waitlisted"]


def test_switching_to_a_mode_with_seats_frees_the_old_seat(app):
    event = make_event(format=EventFormat.HYBRID, capacity_on_site=1, capacity_online=5)
    mover = register(event, 1, attendance="on_site").registration
    waiting = register(event, 2, attendance="on_site").registration

    signup.change_attendance(mover, "online")
    db.session.commit()

    assert mover.attendance == Attendance.ONLINE
    assert mover.status == RegistrationStatus.CONFIRMED
    assert waiting.status == RegistrationStatus.CONFIRMED
    assert outbox_kinds(mover) == ["confirmation", "attendance_changed"]
    assert outbox_kinds(waiting) == ["waitlisted", "promoted"]


def test_switching_to_a_full_mode_needs_consent_to_its_waiting_list(app):
    event = make_event(format=EventFormat.HYBRID, capacity_on_site=5, capacity_online=1)
    register(event, 1, attendance="online")
    mover = register(event, 2, attendance="on_site").registration

    with pytest.raises(ModeFull):
        signup.change_attendance(mover, "online")
    db.session.rollback()
    db.session.refresh(mover)
    assert (mover.attendance, mover.status) == (Attendance.ON_SITE, RegistrationStatus.CONFIRMED)

    signup.change_attendance(mover, "online", accept_waitlist=True)
    db.session.commit()
    assert (mover.attendance, mover.status) == (Attendance.ONLINE, RegistrationStatus.WAITLISTED)
    assert signup.waitlist_position(mover) == 1


def test_switching_from_a_waiting_list_to_free_seats_confirms(app):
    event = make_event(format=EventFormat.HYBRID, capacity_on_site=0, capacity_online=3)
    mover = register(event, 1, attendance="on_site").registration
    assert mover.status == RegistrationStatus.WAITLISTED
    signup.change_attendance(mover, "online")
    db.session.commit()
    assert (mover.attendance, mover.status) == (Attendance.ONLINE, RegistrationStatus.CONFIRMED)


def test_switching_is_only_for_active_registrations_of_hybrid_events(app):
    event = make_event(format=EventFormat.ON_SITE)
    registration = register(event, 1).registration
    with pytest.raises(InvalidInput):
        signup.change_attendance(registration, "online")
    db.session.rollback()
    signup.cancel(registration)
    db.session.commit()
    with pytest.raises(NotActive):
        signup.change_attendance(registration, "online")


def test_manage_token_finds_the_registration_and_is_not_stored(app):
    event = make_event()
    result = register(event, 1)
    token = result.manage_token
    assert len(token) >= 22  # >= 128 bits in base64
    assert signup.find_by_manage_token(token).id == result.registration.id
    assert signup.manage_token(result.registration) == token
    row = db.session.get(Registration, result.registration.id)
    assert token not in {row.manage_token_hash, row.token_salt}
    assert signup.find_by_manage_token(token[:-1] + ("A" if token[-1] != "A" else "B")) is None
    assert signup.find_by_manage_token("../../etc/passwd") is None


def test_tokens_differ_per_registration(app):
    event = make_event(capacity_on_site=None)
    tokens = {register(event, n).manage_token for n in range(20)}
    assert len(tokens) == 20
