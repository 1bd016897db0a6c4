"""The seat decision the database makes under the event lock (services/decision.py), and the
pipelined execution it uses on PostgreSQL (database.execute_pipelined)."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from registration.database import execute_pipelined
from registration.extensions import db
from registration.models import (
    ACTIVE_STATUSES,
    Attendance,
    Event,
    EventFormat,
    EventStatus,
    OutboxMessage,
    Registration,
    RegistrationStatus,
)
from registration.services import decision, seats, signup
from registration.services.errors import (
    DuplicateRegistration,
    EventFull,
    InvalidInput,
    RegistrationClosed,
)
from registration.timeutil import utcnow

from .conftest import make_event
from .test_signup_service import data, register

#: For what only PostgreSQL has (row locks, pipelines, data-modifying CTEs); SQLite serialises
#: whole transactions.
POSTGRESQL_ONLY = pytest.mark.parametrize(
    "database_url", [pytest.param("postgresql", marks=pytest.mark.postgresql)], indirect=True
)

# --- the rule: the SQL decision agrees with the rules the pages show ---------------------------


def expected_outcome(
    event: Event, *, now, mode, chosen, by_organiser, over_capacity, confirmed, duplicate
) -> str:
    """The sign-up rule in Python, from the seats policy's Python twins (the hybrids on Event
    evaluated on the object, seats.seat_left): the decision composes their SQL forms, so the grid
    test below is the differential test between each expression and its twin."""
    if not event.accepts_signups_at(now, by_organiser):
        return "closed"
    if not event.offers(mode, chosen):
        return "attendance"
    if duplicate:
        return "duplicate"
    if over_capacity or seats.seat_left(event.capacity_for(mode), confirmed):
        return "confirmed"
    return "waitlisted" if event.waitlist_enabled else "full"


def spelled_out_outcome(
    event: Event, *, now, mode, chosen, by_organiser, over_capacity, confirmed, duplicate
) -> str:
    """The same rule spelled out from the columns, so that the twins are checked as well."""
    if by_organiser:
        is_open = event.status != EventStatus.CANCELLED
    else:
        is_open = (
            event.status == EventStatus.PUBLISHED
            and (event.registration_opens_at is None or event.registration_opens_at <= now)
            and now < (event.registration_closes_at or event.starts_at)
        )
    if not is_open:
        return "closed"
    if mode not in event.modes or (len(event.modes) > 1 and not chosen):
        return "attendance"
    if duplicate:
        return "duplicate"
    capacity = event.capacity_on_site if mode == Attendance.ON_SITE else event.capacity_online
    if over_capacity or capacity is None or confirmed < capacity:
        return "confirmed"
    return "waitlisted" if event.waitlist_enabled else "full"


WINDOWS = {
    # name: (opens_at, closes_at) relative to now in hours, and where "now" is
    "open": (None, None),
    "not yet": (2, None),
    "opened": (-2, 5),
    "closed": (None, -1),
}


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    status=st.sampled_from(list(EventStatus)),
    window=st.sampled_from(sorted(WINDOWS)),
    after_start=st.booleans(),
    fmt=st.sampled_from(list(EventFormat)),
    mode=st.sampled_from(list(Attendance)),
    chosen=st.booleans(),
    capacity=st.sampled_from([None, 0, 1, 2, 3]),
    waitlist=st.booleans(),
    by_organiser=st.booleans(),
    over_capacity=st.booleans(),
    duplicate=st.booleans(),
)
def test_the_decision_follows_the_rules_of_the_model(
    app, status, window, after_start, fmt, mode, chosen, capacity, waitlist, by_organiser,
    over_capacity, duplicate,
):  # fmt: skip
    event = db.session.scalar(select(Event).where(Event.slug == "grid"))
    if event is None:  # hypothesis runs every example in the same app
        event = make_event(slug="grid", format=EventFormat.HYBRID, capacity_online=10)
        for n in (1, 2):  # two confirmed in each mode
            for m in Attendance:
                register(event, f"{m}{n}", attendance=m.value)
    now = utcnow()
    opens, closes = WINDOWS[window]
    event.status, event.format, event.waitlist_enabled = status, fmt, waitlist
    event.capacity_on_site = event.capacity_online = capacity
    event.registration_opens_at = None if opens is None else now + timedelta(hours=opens)
    event.registration_closes_at = None if closes is None else now + timedelta(hours=closes)
    event.starts_at = now + timedelta(hours=-1 if after_start else 3)
    event.ends_at = event.starts_at + timedelta(hours=2)
    db.session.commit()
    params = {
        "event_id": event.id, "email_key": f"person{mode}1@example.org" if duplicate else "new@x.org",
        "mode": mode, "mode_chosen": chosen, "now": now, "by_organiser": by_organiser,
        "over_capacity": over_capacity,
    }  # fmt: skip
    ((row,),) = execute_pipelined(db.session, [(decision.DECISION, params)])
    db.session.rollback()
    case = {
        "now": now, "mode": mode, "chosen": chosen, "by_organiser": by_organiser,
        "over_capacity": over_capacity, "confirmed": 2, "duplicate": duplicate,
    }  # fmt: skip
    assert row[0] == expected_outcome(event, **case) == spelled_out_outcome(event, **case)
    assert row[1:4] == (2, 0, 0)  # confirmed and waiting in the mode, highest waitlist order


def test_active_means_not_cancelled():
    """The decision checks for an active registration with ``status != 'cancelled'``, the
    condition of the partial unique index that answers it: a new status must be looked at
    there."""
    assert set(RegistrationStatus) - set(ACTIVE_STATUSES) == {RegistrationStatus.CANCELLED}


# --- the decision is made on the row as locked, not as loaded ------------------------------------


def change_behind_the_back(event_id: int, **values: object) -> None:
    """Change the event row in another transaction, as an organiser's edit would."""
    with Session(db.engine) as other:
        other.execute(update(Event).where(Event.id == event_id).values(**values))
        other.commit()


def stale_copy(event_id: int) -> Event:
    """The event as a request loaded it before it took the lock. (Detached while the row
    changes: on SQLite the request's transaction holds the database lock from its start, so
    the change has to come between two transactions there.)"""
    loaded = db.session.get(Event, event_id)
    assert loaded is not None and loaded.questions == []
    db.session.expunge(loaded)
    db.session.rollback()
    return loaded


def attach(loaded: Event) -> Event:
    db.session.add(loaded)
    return loaded


def registrations() -> int:
    return db.session.scalar(select(func.count()).select_from(Registration))


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"status": EventStatus.CANCELLED}, RegistrationClosed),
        ({"registration_closes_at_hours": -1}, RegistrationClosed),
        ({"format": EventFormat.ONLINE}, InvalidInput),
        ({"capacity_on_site": 1, "waitlist_enabled": False}, EventFull),
    ],
)
@pytest.mark.parametrize("commit", [False, True])
def test_a_change_made_after_the_page_was_loaded_decides(app, changes, error, commit):
    event = make_event(capacity_on_site=5)
    register(event, 1)
    loaded = stale_copy(event.id)
    values = dict(changes)
    if "registration_closes_at_hours" in values:
        values["registration_closes_at"] = utcnow() + timedelta(
            hours=values.pop("registration_closes_at_hours")
        )
    change_behind_the_back(event.id, **values)
    before = registrations()
    with pytest.raises(error):
        signup.register(attach(loaded), data(2), commit=commit)
    db.session.rollback()
    assert registrations() == before
    assert db.session.scalar(select(func.count()).select_from(OutboxMessage)) == 1


def test_the_event_object_shows_the_row_it_was_decided_on(app):
    event = stale_copy(make_event(capacity_on_site=1).id)
    change_behind_the_back(event.id, capacity_on_site=3, dial_in_revision=4)
    result = signup.register(attach(event), data(1))
    assert result.status == RegistrationStatus.CONFIRMED
    assert (event.capacity_on_site, event.dial_in_revision) == (3, 4)
    db.session.commit()


def test_a_duplicate_committed_meanwhile_is_refused(app):
    event = stale_copy(make_event().id)
    with Session(db.engine) as other:  # another request signs the same address up first
        other.execute(
            text(
                "INSERT INTO registrations (event_id, email, email_key, first_name, last_name, "
                "organisation, attendance, status, language, privacy_consent_at, created_at, "
                "token_salt, manage_token_hash) VALUES (:e, 'Person1@example.org', "
                "'person1@example.org', 'A', 'B', '', 'on_site', 'confirmed', 'de', "
                ":now, :now, 's', 'h')"
            ),
            {"e": event.id, "now": utcnow().strftime("%Y-%m-%d %H:%M:%S.%f")},
        )
        other.commit()
    with pytest.raises(DuplicateRegistration):
        signup.register(attach(event), data(1), commit=True)
    db.session.rollback()
    assert registrations() == 1


def test_commit_true_commits_the_sign_up_and_its_email(app):
    event = make_event(capacity_on_site=1)
    first = signup.register(event, data(1), commit=True)
    second = signup.register(event, data(2), commit=True)
    db.session.rollback()  # nothing left to roll back: both are committed
    assert (first.status, second.status) == (
        RegistrationStatus.CONFIRMED,
        RegistrationStatus.WAITLISTED,
    )
    assert second.waitlist_position == 1
    kinds = db.session.execute(
        select(OutboxMessage.registration_id, OutboxMessage.kind, OutboxMessage.dedupe_key,
               OutboxMessage.status, OutboxMessage.attempts, OutboxMessage.next_attempt_at)
        .order_by(OutboxMessage.id)
    ).all()  # fmt: skip
    assert [k[:5] for k in kinds] == [
        (first.registration_id, "confirmation", f"confirmation:{first.registration_id}", "pending", 0),
        (second.registration_id, "waitlisted", f"waitlisted:{second.registration_id}", "pending", 0),
    ]  # fmt: skip
    assert all(k[5] is not None and k[5] <= utcnow() for k in kinds)
    assert second.registration.waitlist_order == 1
    assert first.registration.confirmed_at is not None


def test_commit_true_with_answers_and_a_due_dial_in(app):
    from registration.models import Question, QuestionKind

    start = utcnow() + timedelta(hours=2)
    event = make_event(
        format=EventFormat.ONLINE, capacity_on_site=None, capacity_online=5, starts_at=start,
        ends_at=start + timedelta(hours=2), dial_in_url="https://meet.example.org/x",
        dial_in_hours_before=24,
    )  # fmt: skip
    event.questions.append(Question(key="lunch", label="Lunch?", kind=QuestionKind.YES_NO))
    db.session.commit()
    result = signup.register(event, data(1, answers={"lunch": True}), commit=True)
    db.session.rollback()
    registration = result.registration
    assert [a.value for a in registration.answers] == [True]
    kinds = set(
        db.session.scalars(
            select(OutboxMessage.kind).where(OutboxMessage.registration_id == registration.id)
        )
    )
    assert kinds == {"confirmation", "dial_in"}


# --- database.execute_pipelined -----------------------------------------------------------------


@POSTGRESQL_ONLY
def test_pipelined_statements_see_what_committed_while_they_waited_for_the_lock(app):
    """The second statement's snapshot is younger than the first's lock."""
    event = make_event()
    event_id = event.id
    db.session.rollback()
    engine = db.engine  # the thread has no app context

    def holder(ready: threading.Event) -> None:
        with engine.connect() as conn:
            conn.execute(select(Event.id).where(Event.id == event_id).with_for_update())
            ready.set()
            time.sleep(0.3)
            conn.execute(
                text(
                    "INSERT INTO registrations (event_id, email, email_key, first_name, "
                    "last_name, organisation, attendance, status, language, privacy_consent_at, "
                    "created_at, token_salt, manage_token_hash) VALUES (:e, 'a@x.org', "
                    "'a@x.org', 'A', 'B', '', 'on_site', 'confirmed', 'de', now(), now(), "
                    "'s', 'h')"
                ),
                {"e": event_id},
            )
            conn.commit()

    ready = threading.Event()
    thread = threading.Thread(target=holder, args=(ready,))
    thread.start()
    assert ready.wait(5)
    params = {"event_id": event_id}
    _, ((counted,),) = execute_pipelined(
        db.session,
        [
            (select(Event.id).where(Event.id == event_id).with_for_update(), params),
            (select(func.count()).select_from(Registration), params),
        ],
    )
    db.session.rollback()
    thread.join()
    assert counted == 1


def test_pipelined_commit_refuses_unflushed_changes(app):
    event = make_event()
    event.title = "Changed"
    with pytest.raises(RuntimeError):
        execute_pipelined(db.session, [(select(Event.id), {})], commit=True)
    db.session.rollback()


@POSTGRESQL_ONLY
def test_pipelined_errors_are_sqlalchemy_errors_and_nothing_stays_written(app):
    event = make_event()
    register(event, 1)
    values = {
        "new_event_id": event.id, "new_email": "x@example.org", "new_email_key": "x@example.org",
        "new_first_name": "A", "new_last_name": "B", "new_organisation": "",
        "new_language": "de", "new_privacy_consent_at": utcnow(), "new_created_at": utcnow(),
        "new_token_salt": "s", "new_attendance": Attendance.ON_SITE,
        "new_idempotency_key": None, "new_idempotency_hash": None,
        # the manage token hash of registration 1: a unique index refuses it
        "new_manage_token_hash": db.session.scalar(select(Registration.manage_token_hash)),
        "queued_at": utcnow(), "event_id": event.id, "email_key": "x@example.org",
        "mode": Attendance.ON_SITE, "mode_chosen": False, "now": utcnow(),
        "by_organiser": False, "over_capacity": False,
    }  # fmt: skip
    with pytest.raises(IntegrityError):
        execute_pipelined(
            db.session, [(decision.LOCK, values), (decision.DECIDE_AND_INSERT, values)], commit=True
        )
    db.session.rollback()
    assert registrations() == 1


@POSTGRESQL_ONLY
def test_without_pipelines_the_statements_run_one_by_one(app, monkeypatch):
    """psycopg with a libpq older than 14 has no pipeline mode: same results, more round trips."""
    from psycopg import Pipeline

    monkeypatch.setattr(Pipeline, "is_supported", classmethod(lambda cls: False))
    event = make_event(capacity_on_site=1, waitlist_enabled=False)
    first = signup.register(event, data(1), commit=True)
    with pytest.raises(EventFull):
        signup.register(event, data(2), commit=True)
    db.session.rollback()
    assert first.status == RegistrationStatus.CONFIRMED
    assert registrations() == 1
