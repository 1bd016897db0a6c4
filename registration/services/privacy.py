"""GDPR: anonymising participants (retention and erasure on request) and exporting their data.

Anonymising keeps the row of a registration, so the counts per status and attendance mode, the
attendance (check-in, join) and the times stay for statistics; everything that names or reaches
the person goes: names, organisation, address, free-text answers, the check-in code, the personal
links, pending mails, addresses in mail errors and personal values in the audit log.

Retention runs per event in one transaction that holds the event's row lock (``FOR UPDATE``; on
PostgreSQL with ``SKIP LOCKED``, so a second worker passes over an event the first one is busy
with; on SQLite every transaction takes the write lock at ``BEGIN IMMEDIATE``, see database.py).
Sign-ups and cancellations take the same row lock, so none of them interleaves either.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, or_, select
from sqlalchemy.orm import selectinload

from .. import tokens
from ..extensions import db
from ..models import (
    ACTIVE_STATUSES,
    Answer,
    AuditEntry,
    Event,
    Organiser,
    OutboxMessage,
    OutboxStatus,
    Question,
    QuestionKind,
    Registration,
)
from ..timeutil import utcnow
from . import audit, signup

#: What anonymised values are replaced with (in mail errors and audit details).
REDACTED = "[anonymised]"
#: Outbox payload keys that carry nothing about the person (kept for the statistics).
_NEUTRAL_PAYLOAD_KEYS = frozenset({"campaign", "revision"})
#: Audit detail keys whose values are personal whatever they contain.
_PERSONAL_DETAIL_KEYS = frozenset(
    {"email", "first_name", "last_name", "name", "full_name", "organisation", "answers"}
)
_EMAIL_RE = re.compile(r"[^\s<>\"'(),;:\[\]]+@[^\s<>\"'(),;:\[\]]+")


def subject_of(registration: Registration) -> str:
    """How the audit log names a registration (see the back office's entries)."""
    return f"registration:{registration.id}"


# --- one registration ---------------------------------------------------------------------------


def _scrub_text(text: str, personal: list[str]) -> str:
    text = _EMAIL_RE.sub(REDACTED, text)
    for value in personal:
        text = re.sub(re.escape(value), REDACTED, text, flags=re.IGNORECASE)
    return text


def _scrub_details(value: Any, personal: list[str], key: str | None = None) -> Any:
    if key in _PERSONAL_DETAIL_KEYS and value not in (None, "", [], {}):
        return REDACTED
    if isinstance(value, dict):
        return {k: _scrub_details(v, personal, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub_details(v, personal) for v in value]
    if isinstance(value, str):
        return _scrub_text(value, personal)
    return value


def _personal_values(registration: Registration) -> list[str]:
    """The person's own strings, longest first (so "Anna Maria" goes before "Anna")."""
    values = {
        registration.email,
        registration.first_name,
        registration.last_name,
        registration.full_name,
        registration.organisation,
    }
    # Very short values ("Li", "A") would blank out unrelated words.
    return sorted((v.strip() for v in values if v and len(v.strip()) >= 3), key=len, reverse=True)


def anonymise_registration(registration: Registration, *, now: datetime | None = None) -> bool:
    """Remove the personal data of ``registration``, keeping the row for the statistics.

    Status, attendance mode, waiting-list order, language and every timestamp stay. Returns
    ``False`` (and changes nothing) if it was anonymised already. The caller holds the event's
    lock and commits.
    """
    if registration.anonymised_at is not None:
        return False
    now = now or utcnow()
    personal = _personal_values(registration)

    # Pending mails would go to an address that is no longer there; earlier ones keep their kind,
    # status and times, but not the address a mail server may have quoted in its answer.
    for message in db.session.scalars(
        select(OutboxMessage).where(OutboxMessage.registration_id == registration.id)
    ):
        if message.status == OutboxStatus.PENDING:
            message.status = OutboxStatus.SKIPPED
            message.locked_until = None
            message.last_error = "anonymised"
        else:
            message.last_error = _scrub_text(message.last_error or "", personal)
        if message.payload:
            payload = {k: v for k, v in message.payload.items() if k in _NEUTRAL_PAYLOAD_KEYS}
            message.payload = payload or None

    for entry in db.session.scalars(
        select(AuditEntry).where(AuditEntry.subject == subject_of(registration))
    ):
        if entry.details:
            entry.details = _scrub_details(entry.details, personal)

    # Free text may say anything about the person; choices are the event's own words.
    for answer in list(registration.answers):
        if answer.question.kind == QuestionKind.TEXT:
            registration.answers.remove(answer)  # delete-orphan: the row goes

    registration.first_name = ""
    registration.last_name = ""
    registration.organisation = ""
    registration.email = ""
    # Unique per event among active rows (invariant 6): the id keeps it so, and no address can
    # ever match it.
    registration.email_key = f"anonymised:{registration.id}"
    # A new salt makes the join and check-in links useless, a hash of an unknown token the
    # manage link.
    registration.token_salt = tokens.new_salt()
    registration.manage_token_hash = tokens.hash_token(secrets.token_urlsafe(32))
    registration.checkin_qr = None
    registration.anonymised_at = now
    db.session.flush()
    return True


# --- whole events (retention) -------------------------------------------------------------------


@dataclass
class AnonymiseResult:
    """What a retention pass did (or, for a dry run, would do)."""

    #: Slugs of the events handled.
    events: list[str] = field(default_factory=list)
    registrations: int = 0


def retention_ends(event: Event) -> datetime:
    """When the participants' personal data of ``event`` is due for anonymisation."""
    return event.ends_at + timedelta(days=event.retention_days)


def _not_anonymised(event_id: Any) -> Any:
    return exists().where(Registration.event_id == event_id, Registration.anonymised_at.is_(None))


def due_events(now: datetime) -> list[Event]:
    """Events past their retention period with personal data left: never handled, or a
    participant added by hand after the event was handled."""
    candidates = db.session.scalars(
        select(Event)
        .where(
            Event.ends_at <= now,  # retention_days >= 0; the exact date is checked below
            or_(Event.anonymised_at.is_(None), _not_anonymised(Event.id)),
        )
        .order_by(Event.ends_at, Event.id)
    )
    return [event for event in candidates if retention_ends(event) <= now]


def _lock_event(event_id: int, *, wait: bool) -> Event | None:
    """The event row, locked for this transaction. Unless ``wait``, ``None`` when another
    transaction holds it (PostgreSQL; that one is anonymising it or changing a registration:
    the next pass does it)."""
    return db.session.scalars(
        select(Event)
        .where(Event.id == event_id)
        .with_for_update(skip_locked=not wait)
        .execution_options(populate_existing=True)
    ).first()


def _pending_registrations(event: Event) -> list[Registration]:
    return list(
        db.session.scalars(
            select(Registration)
            .where(Registration.event_id == event.id, Registration.anonymised_at.is_(None))
            .options(selectinload(Registration.answers).selectinload(Answer.question))
            .order_by(Registration.id)
        )
    )


def count_pending(event: Event) -> int:
    """How many registrations of ``event`` still hold personal data."""
    return len(
        db.session.scalars(
            select(Registration.id).where(
                Registration.event_id == event.id, Registration.anonymised_at.is_(None)
            )
        ).all()
    )


def anonymise_event(
    event: Event,
    *,
    now: datetime | None = None,
    actor: Organiser | None = None,
    wait: bool = False,
) -> int | None:
    """Anonymise every participant of ``event`` now, in one transaction (commits).

    Returns how many registrations were anonymised, or ``None`` when there was nothing to do:
    done before, or (unless ``wait``) another transaction holds the event, which is then left
    for the next pass.
    """
    now = now or utcnow()
    locked = _lock_event(event.id, wait=wait)
    if locked is None:
        db.session.rollback()
        return None
    count = 0
    for registration in _pending_registrations(locked):
        if anonymise_registration(registration, now=now):
            count += 1
    first_time = locked.anonymised_at is None
    if first_time:
        locked.anonymised_at = now
    if not (count or first_time):
        db.session.rollback()
        return None
    audit.record(actor, "privacy.anonymise_event", event=locked, details={"registrations": count})
    db.session.commit()
    return count


def anonymise_due_events(now: datetime | None = None, *, dry_run: bool = False) -> AnonymiseResult:
    """Anonymise the participants of every event whose retention period is over (the worker and
    ``flask privacy anonymise`` call this). Safe to run twice and in several workers at once."""
    now = now or utcnow()
    result = AnonymiseResult()
    due = [(event.id, event.slug) for event in due_events(now)]
    if dry_run:
        for event_id, slug in due:
            result.events.append(slug)
            result.registrations += count_pending(db.session.get(Event, event_id))
        db.session.rollback()
        return result
    db.session.rollback()  # end the reading transaction: each event gets its own
    for event_id, slug in due:
        event = db.session.get(Event, event_id)
        if event is None:
            continue
        done = anonymise_event(event, now=now)
        if done is not None:
            result.events.append(slug)
            result.registrations += done
    return result


# --- one person on request (back office) --------------------------------------------------------


@dataclass
class ErasureResult:
    #: The registration was cancelled first (it held a seat or a waiting-list place).
    cancelled: bool
    #: Registrations promoted from the waiting list to the freed seat.
    promoted: list[Registration]


def erase_registration(
    registration: Registration, actor: Organiser, *, now: datetime | None = None
) -> ErasureResult:
    """Erase a participant on request: anonymise them at once; the caller commits.

    Before the event has ended an active registration is cancelled first, so the seat is freed
    and the waiting list moves up as with any cancellation (the promoted people are told). The
    person gets no cancellation mail: they asked to be erased, and the mail would need the
    address that is being deleted. After the event the status stays as it was (statistics).
    """
    now = now or utcnow()
    signup.lock_event(registration.event_id)
    db.session.refresh(registration)
    promoted: list[Registration] = []
    cancelled = False
    if registration.status in ACTIVE_STATUSES and registration.event.ends_at > now:
        promoted = signup.cancel(registration, now=now)  # queues a cancellation mail ...
        cancelled = True
    audit.record(
        actor, "participant.erase", event=registration.event,
        subject=subject_of(registration),
        details={"cancelled": cancelled, "promoted": len(promoted)},
    )  # fmt: skip
    anonymise_registration(registration, now=now)  # ... which this skips with the rest
    return ErasureResult(cancelled=cancelled, promoted=promoted)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def export_registration(registration: Registration) -> dict[str, Any]:
    """Everything stored about the person, as JSON-ready data (GDPR Art. 15 and 20)."""
    event = registration.event
    answers = db.session.scalars(
        select(Answer)
        .where(Answer.registration_id == registration.id)
        .join(Question, Answer.question_id == Question.id)
        .order_by(Question.position, Question.id)
    ).all()
    emails = db.session.scalars(
        select(OutboxMessage)
        .where(OutboxMessage.registration_id == registration.id)
        .order_by(OutboxMessage.created_at, OutboxMessage.id)
    ).all()
    entries = db.session.scalars(
        select(AuditEntry)
        .where(AuditEntry.subject == subject_of(registration))
        .order_by(AuditEntry.created_at, AuditEntry.id)
    ).all()
    return {
        "event": {
            "slug": event.slug,
            "title": event.title,
            "starts_at": _iso(event.starts_at),
            "ends_at": _iso(event.ends_at),
        },
        "registration": {
            "id": registration.id,
            "first_name": registration.first_name,
            "last_name": registration.last_name,
            "email": registration.email,
            "organisation": registration.organisation,
            "attendance": str(registration.attendance),
            "status": str(registration.status),
            "language": registration.language,
            "waitlist_position": signup.waitlist_position(registration),
            "privacy_consent_at": _iso(registration.privacy_consent_at),
            "created_at": _iso(registration.created_at),
            "confirmed_at": _iso(registration.confirmed_at),
            "cancelled_at": _iso(registration.cancelled_at),
            "checked_in_at": _iso(registration.checked_in_at),
            "joined_at": _iso(registration.joined_at),
            "anonymised_at": _iso(registration.anonymised_at),
            "has_checkin_qr_code": registration.checkin_qr is not None,
        },
        "answers": [
            {
                "question": answer.question.label,
                "key": answer.question.key,
                "kind": str(answer.question.kind),
                "value": answer.value,
            }
            for answer in answers
        ],
        "emails": [
            {
                "kind": message.kind,
                "status": str(message.status),
                "created_at": _iso(message.created_at),
                "sent_at": _iso(message.sent_at),
                "attempts": message.attempts,
                "last_error": message.last_error,
                **(
                    {"subject": message.payload["subject"], "body": message.payload["body"]}
                    if message.kind == "message"
                    and message.payload
                    and "subject" in message.payload
                    else {}
                ),
            }
            for message in emails
        ],
        "audit_log": [
            {
                "at": _iso(entry.created_at),
                "action": entry.action,
                "by": entry.actor_email or None,
                "details": entry.details,
            }
            for entry in entries
        ],
    }
