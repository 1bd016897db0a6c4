"""Writing emails to the outbox, inside the caller's transaction (DESIGN.md invariant 3)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    CTE,
    ColumnElement,
    Insert,
    Select,
    String,
    bindparam,
    cast,
    func,
    insert,
    literal,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ..extensions import db
from ..models import OutboxMessage, OutboxStatus, Registration
from ..timeutil import utcnow

#: Kinds a registration receives at most once in its life. The others (e.g. "promoted" or
#: "waitlisted" after a switch of attendance) may recur, each transition getting its own row.
ONCE_PER_REGISTRATION = frozenset({"confirmation", "cancellation", "reminder"})


def enqueue(
    kind: str, registration: Registration, *, payload: dict[str, Any] | None = None
) -> OutboxMessage | None:
    """Add an email of ``kind`` for ``registration`` to the outbox.

    Returns ``None`` when a once-only kind is already queued or sent for this registration.
    The first row of a kind has the key ``kind:<registration id>``, later ones ``kind:<id>:<n>``.
    """
    if registration.id is None:
        db.session.flush()
    base_key = f"{kind}:{registration.id}"
    existing = db.session.scalar(
        select(func.count())
        .select_from(OutboxMessage)
        .where(
            OutboxMessage.registration_id == registration.id,
            OutboxMessage.kind == kind,
        )
    )
    if existing and kind in ONCE_PER_REGISTRATION:
        return None
    key = base_key if not existing else f"{base_key}:{existing + 1}"
    return _add(kind, registration, key, payload)


def enqueue_first(kind: str, registration_id: int, event_id: int) -> None:
    """Add the first email of a registration created in this transaction (a sign-up): nothing
    can be queued for it yet, so unlike :func:`enqueue` this does not look. One Core INSERT,
    sent at once: a sign-up does this under the event lock, where the unit of work's overhead
    would cost every sign-up queued behind it. (On PostgreSQL a sign-up uses
    :func:`with_first_mail` instead.)"""
    db.session.execute(
        _INSERT,
        {
            "kind": kind,
            "registration_id": registration_id,
            "event_id": event_id,
            "dedupe_key": f"{kind}:{registration_id}",
        },
    )


#: Built once (see enqueue_first); the columns' defaults fill in the rest.
_INSERT = insert(OutboxMessage.__table__)


def with_first_mail(new_registrations: CTE, kind: ColumnElement[str]) -> Insert:
    """A statement that queues the first email of each row of ``new_registrations`` (a CTE
    with the ``id`` and ``event_id`` of registrations it inserts), of the kind ``kind`` (an
    expression over its columns), with the rows and keys :func:`enqueue_first` writes: the
    sign-up's second INSERT in the same statement (PostgreSQL, services/decision.py). Its
    parameter ``queued_at`` is the time of the sign-up."""
    table = OutboxMessage.__table__
    queued_at = bindparam("queued_at", type_=table.c.created_at.type)
    columns = {
        "kind": kind,
        "registration_id": new_registrations.c.id,
        "event_id": new_registrations.c.event_id,
        "dedupe_key": kind + ":" + cast(new_registrations.c.id, String),
        # The columns' defaults, written out: a nested INSERT leaves them unset.
        "status": literal(OutboxStatus.PENDING.value, String),
        "attempts": literal(0),
        "next_attempt_at": queued_at,
        "last_error": literal(""),
        "created_at": queued_at,
    }
    return insert(table).from_select(
        list(columns), select(*columns.values()), include_defaults=False
    )


def enqueue_keyed(
    kind: str, registration: Registration, key: str, *, payload: dict[str, Any] | None = None
) -> OutboxMessage | None:
    """Add an email with an explicit dedupe key, unless that key is queued already."""
    if db.session.scalar(select(OutboxMessage.id).where(OutboxMessage.dedupe_key == key)):
        return None
    return _add(kind, registration, key, payload)


def _add(
    kind: str, registration: Registration, key: str, payload: dict[str, Any] | None
) -> OutboxMessage:
    message = OutboxMessage(
        kind=kind,
        registration_id=registration.id,
        event_id=registration.event_id,
        dedupe_key=key,
        payload=payload,
    )
    db.session.add(message)
    return message


def retry(message: OutboxMessage, *, now: datetime | None = None) -> bool:
    """Put a failed email back in the queue (an organiser's explicit decision)."""
    if message.status != OutboxStatus.FAILED:
        return False
    message.status = OutboxStatus.PENDING
    message.next_attempt_at = now or utcnow()
    message.locked_until = None
    message.last_error = f"retried after: {message.last_error}"[:2000]
    return True


def resend(message: OutboxMessage, *, now: datetime | None = None) -> OutboxMessage:
    """Send an email again: a new outbox row (the once-per-registration rule is for automatic
    mails; an organiser may re-send on purpose). Rendered from the current data."""
    now = now or utcnow()
    copy = OutboxMessage(
        kind=message.kind,
        registration_id=message.registration_id,
        event_id=message.event_id,
        dedupe_key=f"{message.dedupe_key}:resend:{now.timestamp():.6f}",
        payload=message.payload,
        next_attempt_at=now,
        created_at=now,
    )
    db.session.add(copy)
    return copy


def enqueue_for_each(
    kind: str,
    recipients: Select[Any],
    key_suffix: str | None,
    *,
    key_prefix: str | None = None,
    payload: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> int:
    """Queue ``kind`` for every registration ``recipients`` selects (a select of
    ``Registration.id`` and ``Registration.event_id``), keyed ``<key_prefix>:<id>:<key_suffix>``
    (the prefix defaults to the kind; no suffix: ``<prefix>:<id>``), in one INSERT ... SELECT
    however many there are: no statement grows with them. A key queued already is left alone,
    so a retried transaction or a second worker adds nothing. Returns how many rows were
    added."""
    table = OutboxMessage.__table__
    now = now or utcnow()
    people = recipients.subquery("recipients")
    registration_id, event_id = people.c
    columns = {
        "kind": literal(kind, String),
        "registration_id": registration_id,
        "event_id": event_id,
        "dedupe_key": literal(f"{key_prefix or kind}:", String)
        + cast(registration_id, String)
        + literal("" if key_suffix is None else f":{key_suffix}", String),
        "payload": literal(payload, table.c.payload.type),
        # The columns' defaults, written out: INSERT ... SELECT leaves them unset.
        "status": literal(OutboxStatus.PENDING.value, String),
        "attempts": literal(0),
        "next_attempt_at": literal(now, table.c.next_attempt_at.type),
        "last_error": literal(""),
        "created_at": literal(now, table.c.created_at.type),
    }
    insert_ = (
        sqlite_insert(table)
        if db.session.get_bind().dialect.name == "sqlite"
        else postgresql_insert(table)
    )
    # SQLite needs a WHERE in an INSERT ... SELECT ... ON CONFLICT (its parser is ambiguous
    # without one).
    rows = select(*columns.values()).where(true())
    statement = insert_.from_select(list(columns), rows, include_defaults=False)
    statement = statement.on_conflict_do_nothing(index_elements=["dedupe_key"])
    # Counted from RETURNING: rowcount is -1 for this statement on SQLite.
    return len(db.session.execute(statement.returning(table.c.id)).all())
