"""Sign-up, cancellation, switching attendance and the waiting list.

Every function here first locks the event row (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite
transactions hold the database write lock from their start, see database.py), then reads the seat
counts and decides. Two sign-ups for the same event are therefore decided one after the other,
however many processes serve them (DESIGN.md invariants 1 and 2). Since every sign-up for an
event queues for that lock, :func:`register` does all it can before taking it, and leaves the
decision under the lock to the database (services/decision.py): on PostgreSQL the lock, the
decision with the INSERTs and usually the COMMIT reach the server in one round trip, so the lock
is held only while the server works. The wait for the lock is bounded (``SIGNUP_LOCK_TIMEOUT``,
PostgreSQL): behind a stuck transaction, requests end with :class:`Busy` ("try again") instead of
piling up.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flask_babel import lazy_gettext as _l
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm.attributes import set_committed_value

from .. import qrcode, tokens
from ..database import (
    PAGES_CHANGED,
    SET_LOCK_TIMEOUT,
    busy,
    execute_pipelined,
    is_lock_timeout,
    lock_timeout_params,
)
from ..extensions import db
from ..models import (
    Attendance,
    Event,
    Registration,
    RegistrationStatus,
)
from ..timeutil import utcnow
from . import answers, decision, outbox, scheduling, seats
from .errors import (
    DuplicateRegistration,
    EventFull,
    IdempotencyKeyReused,
    InvalidInput,
    ModeFull,
    NotActive,
    RegistrationClosed,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SignupData:
    """Validated input for :func:`register` (from the form, the API or the back office)."""

    email: str
    first_name: str
    last_name: str
    organisation: str = ""
    attendance: str | None = None
    privacy_consent: bool = False
    language: str = "de"
    #: Answers to the event's custom questions, by question key (validated by the service).
    answers: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Idempotency:
    """An API client's ``Idempotency-Key`` and a digest of the request it came with."""

    key: str
    digest: str


#: How long an Idempotency-Key names its sign-up; after that the key may name a new one.
IDEMPOTENCY_WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class PendingCheckinCode:
    """What :func:`add_checkin_qr` needs, kept so that it works after the commit without
    reloading the registration."""

    registration_id: int
    token_salt: str


@dataclass(frozen=True)
class SignupResult:
    #: The secret for the manage link; only the participant (and their emails) ever see it.
    manage_token: str
    waitlist_position: int | None
    #: The outcome as plain values, usable after the commit without reloading the row.
    registration_id: int
    status: RegistrationStatus
    attendance: Attendance
    #: Set when the registration needs a check-in QR code (see :func:`add_checkin_qr`).
    checkin_code: PendingCheckinCode | None = None

    @property
    def registration(self) -> Registration:
        """The registration (from the session, else loaded: the sign-up wrote it with Core
        statements)."""
        return db.session.get_one(Registration, self.registration_id)


_LOCK_EVENT = (
    select(Event)
    .where(Event.id == bindparam("event_id"))
    .with_for_update()
    .execution_options(populate_existing=True)
)


def lock_event(event_id: int) -> Event:
    """Lock the event row for the rest of the transaction and return it freshly loaded.

    On PostgreSQL the wait for the lock ends after the lock timeout (``SIGNUP_LOCK_TIMEOUT``)
    with :class:`Busy`, the transaction rolled back."""
    try:
        if db.session.get_bind().dialect.name == "postgresql":
            db.session.execute(SET_LOCK_TIMEOUT, lock_timeout_params())
        return db.session.scalars(_LOCK_EVENT, {"event_id": event_id}).one()
    except OperationalError as exc:
        if not is_lock_timeout(exc):
            raise
        db.session.rollback()
        raise busy() from exc


def _refresh(registration: Registration) -> Registration:
    """Reload a registration after the event lock, so decisions use committed data."""
    db.session.refresh(registration)
    return registration


def count(event: Event, mode: Attendance | str, status: RegistrationStatus) -> int:
    """How many registrations of ``event`` in ``mode`` have ``status``."""
    return seats.pool(event, mode).count(status)


def confirmed_count(event: Event, mode: Attendance | str) -> int:
    return seats.pool(event, mode).confirmed()


def waitlisted_count(event: Event, mode: Attendance | str) -> int:
    return seats.pool(event, mode).waitlisted()


def has_seat(event: Event, mode: Attendance | str) -> bool:
    return seats.pool(event, mode).has_seat()


def waitlist_position(registration: Registration) -> int | None:
    """1-based position among those waiting for the same event and mode, or ``None``."""
    return seats.waitlist_position(registration)


def _next_waitlist_order(event: Event) -> int:
    return db.session.scalar(seats.last_waitlist_order(event.id)) + 1


_REGISTRATIONS = Registration.__table__
#: Built once: SQLAlchemy's statement building costs about as much as the round trip.
_INSERT_REGISTRATION = insert(_REGISTRATIONS).returning(_REGISTRATIONS.c.id)
_STORE_CHECKIN_QR = (
    update(_REGISTRATIONS)
    .where(
        _REGISTRATIONS.c.id == bindparam("qr_registration_id"),
        _REGISTRATIONS.c.checkin_qr.is_(None),
        _REGISTRATIONS.c.anonymised_at.is_(None),
    )
    .values(checkin_qr=bindparam("qr_image"))
)


def _resolve_attendance(event: Event, requested: str | None) -> Attendance:
    modes = event.modes
    if requested in (None, ""):
        if len(modes) == 1:
            return modes[0]
        raise InvalidInput({"attendance": [_l("Please choose how you will attend.")]})
    if not event.offers(requested):  # the seats policy's rule (decision.py's SQL twin)
        if len(modes) == 1 and modes[0] == Attendance.ON_SITE:
            message = _l("This event takes place on site only.")
        elif len(modes) == 1:
            message = _l("This event takes place online only.")
        else:
            message = _l("Please choose on site or online.")
        raise InvalidInput({"attendance": [message]})
    return Attendance(requested)


def find_active(event: Event, email: str) -> Registration | None:
    return db.session.scalars(
        select(Registration).where(
            Registration.event_id == event.id,
            Registration.email_key == email.strip().lower(),
            Registration.is_active,
        )
    ).first()


def register(
    event: Event,
    data: SignupData,
    *,
    now: datetime | None = None,
    by_organiser: bool = False,
    over_capacity: bool = False,
    idempotency: Idempotency | None = None,
    commit: bool = False,
) -> SignupResult:
    """Sign a participant up: confirmed while seats are left, else waitlisted (if enabled).

    ``by_organiser`` (a phone sign-up entered in the back office) ignores the sign-up window;
    ``over_capacity`` confirms even when the mode is full (an organiser's explicit decision).
    ``commit`` commits the session (which must hold no other changes) before returning; where
    it can, together with the sign-up's statements (see below). ``idempotency`` is stored with
    the registration (see :func:`find_by_idempotency_key`); a key that names another sign-up of
    the event is :class:`IdempotencyKeyReused`.

    Raises :class:`RegistrationClosed`, :class:`DuplicateRegistration`, :class:`EventFull`,
    :class:`InvalidInput` (fields, custom answers as ``answers.<key>``) or :class:`Busy` (the
    event's lock was not granted within the lock timeout). Nothing is written when it raises.
    """
    now = now or utcnow()
    if not data.privacy_consent:
        raise InvalidInput({"privacy_consent": [_l("Please agree to the privacy notice.")]})
    # Every sign-up for the event queues for its lock, so whatever does not need it happens
    # before: the input is checked against the event as loaded, the tokens are derived and the
    # row's values are built. Under the lock the database decides (services/decision.py): on
    # PostgreSQL the lock, the decision with both INSERTs and usually the COMMIT go to the
    # server in one round trip.
    _check_open(event, now, by_organiser)
    mode = _resolve_attendance(event, data.attendance)
    valid_answers = answers.validate(event.questions, data.answers)
    email_key = data.email.strip().lower()
    salt = tokens.new_salt()
    manage_token = tokens.derive(salt, "manage")
    values = {
        "event_id": event.id,
        "email": data.email.strip(),
        "email_key": email_key,
        "first_name": data.first_name.strip(),
        "last_name": data.last_name.strip(),
        "organisation": (data.organisation or "").strip(),
        "language": data.language,
        "privacy_consent_at": now,
        "created_at": now,
        "token_salt": salt,
        "manage_token_hash": tokens.hash_token(manage_token),
        "attendance": mode,
        "idempotency_key": idempotency.key if idempotency else None,
        "idempotency_hash": idempotency.digest if idempotency else None,
    }
    params = {
        "event_id": event.id,
        "email_key": email_key,
        "mode": mode,
        "mode_chosen": data.attendance not in (None, ""),
        "now": now,
        "by_organiser": by_organiser,
        "over_capacity": over_capacity,
    }
    # Answers and a dial-in mail due at once need the new id, so they follow the INSERT; then
    # the COMMIT cannot go with it. (The worker queues a dial-in mail the app missed.)
    finish_at_once = (
        commit
        and not valid_answers
        and not (mode == Attendance.ONLINE and scheduling.dial_in_due(event, now))
    )
    db.session.info[PAGES_CHANGED] = True  # Core INSERTs: the ORM does not see them
    try:
        decided = _decide(values, params, finish_at_once)
    except IntegrityError as exc:
        db.session.rollback()
        if _is_duplicate_email(exc):  # the unique index is the last line of defence
            raise DuplicateRegistration() from exc
        if _is_duplicate_idempotency_key(exc):  # the same key, sent at the same moment
            raise IdempotencyKeyReused() from exc
        raise  # anything else is a bug (e.g. in locking) and must not pass as a duplicate
    except OperationalError as exc:
        if not is_lock_timeout(exc):
            raise
        db.session.rollback()
        raise busy() from exc
    for column, value in zip(decision.EVENT_COLUMNS, decided.event_values, strict=True):
        set_committed_value(event, column.key, value)  # the row as it was decided on
    registration_id = decided.registration_id
    if registration_id is None:
        _refuse(decided.outcome, event, data)
    status = RegistrationStatus(decided.outcome)
    if not finish_at_once:
        answers.store(registration_id, valid_answers)
        if mode == Attendance.ONLINE and status == RegistrationStatus.CONFIRMED:
            registration = db.session.get_one(Registration, registration_id)
            scheduling.dial_in_if_due(registration, event, now)
        if commit:
            db.session.commit()
    checkin = None
    if status == RegistrationStatus.CONFIRMED and mode == Attendance.ON_SITE:
        # Only confirmed on-site participants get mails with the code (the waiting list gets it
        # on promotion). It costs milliseconds, so it is made after the commit by
        # add_checkin_qr(), not under the event lock; the mail worker makes it if that step
        # never ran (notifications.py).
        checkin = PendingCheckinCode(registration_id, salt)
    return SignupResult(
        manage_token,
        decided.waiting + 1 if status == RegistrationStatus.WAITLISTED else None,
        registration_id=registration_id,
        status=status,
        attendance=mode,
        checkin_code=checkin,
    )


def _decide(values: dict[str, Any], params: dict[str, Any], commit: bool) -> decision.Decided:
    """The measured sign-up path: lock the event (waiting at most the lock timeout), let the
    database decide (decision.py) and, when it accepts, insert the registration and queue its
    first email; commit if ``commit``. On PostgreSQL all of it is one round trip."""
    if db.session.get_bind().dialect.name == "postgresql":
        new = {f"new_{name}": values[name] for name in decision.NEW_COLUMNS}
        _, _, (row,) = execute_pipelined(
            db.session,
            [
                # The lock's wait is bounded (lock_event explains why); same round trip.
                (SET_LOCK_TIMEOUT, lock_timeout_params()),
                (decision.LOCK, params),
                (decision.DECIDE_AND_INSERT, {**params, **new, "queued_at": params["now"]}),
            ],
            commit=commit,
        )
        return decision.Decided.of(row[:-1], row[-1])
    # SQLite: the transaction has held the database's write lock since its start.
    ((row,),) = execute_pipelined(db.session, [(decision.DECISION, params)])
    outcome = decision.Outcome(row[0])
    registration_id = None
    if outcome in decision.ACCEPTED:
        registration_id = db.session.execute(
            _INSERT_REGISTRATION,
            {
                **values,
                "status": outcome.value,
                "waitlist_order": row[3] + 1 if outcome == decision.Outcome.WAITLISTED else None,
                "confirmed_at": params["now"] if outcome == decision.Outcome.CONFIRMED else None,
            },
        ).scalar_one()
        outbox.enqueue_first(
            "confirmation" if outcome == decision.Outcome.CONFIRMED else "waitlisted",
            registration_id,
            values["event_id"],
        )
    if commit:
        db.session.commit()
    return decision.Decided.of(row, registration_id)


def _refuse(outcome: decision.Outcome, event: Event, data: SignupData) -> None:
    """Raise the error for a refused sign-up (``event`` as it was decided on)."""
    if outcome == decision.Outcome.CLOSED:
        raise RegistrationClosed()
    if outcome == decision.Outcome.ATTENDANCE:
        _resolve_attendance(event, data.attendance)  # raises with the precise message
        raise InvalidInput({"attendance": [_l("Please choose on site or online.")]})
    if outcome == decision.Outcome.DUPLICATE:
        raise DuplicateRegistration()
    raise EventFull()


def _check_open(event: Event, now: datetime, by_organiser: bool) -> None:
    if not event.accepts_signups_at(now, by_organiser):
        raise RegistrationClosed()


def add_checkin_qr(result: SignupResult) -> None:
    """Store the check-in QR code of a committed sign-up that needs one, in a transaction of its
    own (the registration row only, no event lock); commits. Call it after the sign-up's commit.
    """
    pending = result.checkin_code
    if pending is None:
        return
    image = qrcode.checkin_png_for(pending.registration_id, pending.token_salt)
    try:
        db.session.execute(
            _STORE_CHECKIN_QR, {"qr_registration_id": pending.registration_id, "qr_image": image}
        )
        db.session.commit()
    except SQLAlchemyError:
        # The sign-up itself is committed and must not be reported as failed: the mail worker
        # makes the code when it is still missing.
        db.session.rollback()
        log.warning("check-in code of registration %s not stored", pending.registration_id)


def _is_duplicate_email(exc: IntegrityError) -> bool:
    """Whether ``exc`` is a violation of the one-active-registration-per-address index."""
    text = str(exc.orig)
    # PostgreSQL names the index; SQLite names the columns.
    return "uq_registrations_event_email_active" in text or "registrations.email_key" in text


def _is_duplicate_idempotency_key(exc: IntegrityError) -> bool:
    text = str(exc.orig)
    return (
        "uq_registrations_event_idempotency_key" in text or "registrations.idempotency_key" in text
    )


def find_by_idempotency_key(
    event: Event, key: str, *, now: datetime | None = None
) -> Registration | None:
    """The sign-up of ``event`` an Idempotency-Key named within :data:`IDEMPOTENCY_WINDOW`."""
    since = (now or utcnow()) - IDEMPOTENCY_WINDOW
    return db.session.scalars(
        select(Registration).where(
            Registration.event_id == event.id,
            Registration.idempotency_key == key,
            Registration.created_at > since,
        )
    ).first()


def key_expired(event: Event, key: str, *, now: datetime | None = None) -> bool:
    """Whether a sign-up of ``event`` older than :data:`IDEMPOTENCY_WINDOW` holds ``key``: the
    key then names nothing any more, and a new sign-up does not store it again."""
    since = (now or utcnow()) - IDEMPOTENCY_WINDOW
    return (
        db.session.scalars(
            select(Registration.id).where(
                Registration.event_id == event.id,
                Registration.idempotency_key == key,
                Registration.created_at <= since,
            )
        ).first()
        is not None
    )


def answer_duplicate(
    event: Event, email: str, *, now: datetime | None = None
) -> Registration | None:
    """Someone signs up again with an address that is registered already (a lost
    confirmation, a lost answer): mail the registration's personal link to that address once
    more (at most once an hour) instead of a dead end; commits. Returns the registration, whose
    state the answer may show; the link itself only ever goes to the address."""
    now = now or utcnow()
    registration = find_active(event, email)
    if registration is None or registration.anonymised_at is not None:
        return None
    outbox.enqueue_keyed(
        "manage_link", registration, f"manage_link:{registration.id}:{now:%Y%m%d%H}"
    )
    db.session.commit()
    return registration


def find_by_manage_token(token: str) -> Registration | None:
    """The registration a manage link belongs to, or ``None`` (also for malformed tokens)."""
    if not tokens.looks_like_token(token):
        return None
    return db.session.scalars(
        select(Registration).where(Registration.manage_token_hash == tokens.hash_token(token))
    ).first()


def manage_token(registration: Registration) -> str:
    return tokens.derive(registration.token_salt, "manage")


def confirm_anyway(registration: Registration, *, now: datetime | None = None) -> Registration:
    """Move someone from the waiting list to a seat although the mode is full (an organiser's
    explicit decision; the only way past capacity)."""
    now = now or utcnow()
    event = lock_event(registration.event_id)
    registration = _refresh(registration)
    if registration.status != RegistrationStatus.WAITLISTED:
        raise NotActive(_l("Only people on the waiting list can be confirmed this way."))
    registration.status = RegistrationStatus.CONFIRMED
    registration.confirmed_at = now
    qrcode.ensure_checkin_qr(registration)
    db.session.flush()
    outbox.enqueue("promoted", registration)
    scheduling.dial_in_if_due(registration, event, now)
    return registration


def update_details(
    registration: Registration, *, email: str, first_name: str, last_name: str, organisation: str
) -> Registration:
    """Correct a participant's details (back office). The address stays unique per event."""
    event = lock_event(registration.event_id)
    registration = _refresh(registration)
    key = email.strip().lower()
    if key != registration.email_key and registration.is_active:
        other = find_active(event, key)
        if other is not None and other.id != registration.id:
            raise DuplicateRegistration()
    registration.email, registration.email_key = email.strip(), key
    registration.first_name, registration.last_name = first_name.strip(), last_name.strip()
    registration.organisation = organisation.strip()
    db.session.flush()
    return registration


def personal_token(registration: Registration, purpose: str) -> str:
    """The token of a registration's personal link for ``purpose`` ("join", "checkin")."""
    return tokens.personal_token(registration.id, registration.token_salt, purpose)


def find_by_personal_token(token: str, purpose: str) -> Registration | None:
    parts = tokens.split_personal_token(token)
    if parts is None:
        return None
    registration = db.session.get(Registration, parts[0])
    if registration is None or not tokens.matches(registration.token_salt, purpose, parts[1]):
        return None
    return registration


def checkin_token(registration: Registration) -> str:
    return tokens.short_token(registration.id, registration.token_salt, "checkin")


def find_by_checkin_token(token: str) -> Registration | None:
    parts = tokens.split_short_token(token)
    if parts is None:
        return None
    registration = db.session.get(Registration, parts[0])
    if registration is None or not tokens.matches_short(
        registration.token_salt, "checkin", parts[1]
    ):
        return None
    return registration


def record_join(registration: Registration, *, now: datetime | None = None) -> bool:
    """Note the first use of the join link as online attendance. Returns whether the person may
    join (confirmed for online attendance)."""
    if not (
        registration.status == RegistrationStatus.CONFIRMED
        and registration.attendance == Attendance.ONLINE
    ):
        return False
    if registration.joined_at is None:
        registration.joined_at = now or utcnow()
    return True


def cancel(registration: Registration, *, now: datetime | None = None) -> list[Registration]:
    """Cancel a registration; a freed seat goes to the first waiting person of that mode.

    Cancelling twice is harmless (nothing happens the second time). Returns the promoted
    registrations.
    """
    now = now or utcnow()
    event = lock_event(registration.event_id)
    registration = _refresh(registration)
    if registration.status == RegistrationStatus.CANCELLED:
        return []
    held_seat = registration.status == RegistrationStatus.CONFIRMED
    registration.status = RegistrationStatus.CANCELLED
    registration.cancelled_at = now
    db.session.flush()
    outbox.enqueue("cancellation", registration)
    if held_seat:
        return promote_waitlisted(event, registration.attendance, now=now)
    return []


def promote_waitlisted(
    event: Event, mode: Attendance | str, *, now: datetime | None = None
) -> list[Registration]:
    """Give free seats of ``mode`` to the earliest waiting participants, and tell them.

    The caller must hold the event lock (:func:`lock_event`).
    """
    now = now or utcnow()
    promoted = seats.pool(event, mode).next_to_promote()
    for registration in promoted:
        registration.status = RegistrationStatus.CONFIRMED
        registration.confirmed_at = now
        qrcode.ensure_checkin_qr(registration)  # waiting on site, they had none
    db.session.flush()
    for registration in promoted:
        outbox.enqueue("promoted", registration)
        scheduling.dial_in_if_due(registration, event, now)
    return promoted


def promote_all(event: Event, *, now: datetime | None = None) -> list[Registration]:
    """Fill every mode's free seats from its waiting list (after capacity was raised)."""
    promoted: list[Registration] = []
    for mode in event.modes:
        promoted.extend(promote_waitlisted(event, mode, now=now))
    return promoted


def change_attendance(
    registration: Registration,
    new_mode: str,
    *,
    accept_waitlist: bool = False,
    now: datetime | None = None,
) -> Registration:
    """Switch a hybrid event's participant between on site and online.

    With a seat free in the new mode the participant is confirmed there; otherwise, when the event
    has a waiting list and they agreed (``accept_waitlist``), they join the new mode's waiting list
    at its end, else :class:`ModeFull` is raised and nothing changes. A seat given up is passed to
    the first waiting person of the old mode in the same transaction.
    """
    now = now or utcnow()
    event = lock_event(registration.event_id)
    registration = _refresh(registration)
    if not registration.is_active:
        raise NotActive()
    if len(event.modes) < 2:
        raise InvalidInput({"attendance": [_l("This event offers only one kind of attendance.")]})
    mode = _resolve_attendance(event, new_mode)
    if mode == registration.attendance:
        return registration

    old_mode, held_seat = (
        registration.attendance,
        registration.status == (RegistrationStatus.CONFIRMED),
    )
    if has_seat(event, mode):
        registration.status = RegistrationStatus.CONFIRMED
        registration.confirmed_at = now
        kind = "attendance_changed"
    elif event.waitlist_enabled and accept_waitlist:
        order = _next_waitlist_order(event)  # query before changing the row (autoflush)
        registration.status = RegistrationStatus.WAITLISTED
        registration.waitlist_order = order
        kind = "waitlisted"
    else:
        raise ModeFull()
    registration.attendance = mode
    qrcode.ensure_checkin_qr(registration)
    db.session.flush()
    outbox.enqueue(kind, registration)
    scheduling.dial_in_if_due(registration, event, now)
    if held_seat:
        promote_waitlisted(event, old_mode, now=now)
    return registration
