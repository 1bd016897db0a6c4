"""Sending the outbox: claim due rows, render, send over one connection, record the result.

Claiming takes a lease (``locked_until``) in a short transaction of its own: on PostgreSQL with
``FOR UPDATE SKIP LOCKED``, so any number of workers share the rows without taking one twice; on
SQLite transactions are serialised anyway (one worker is enough there). Sending happens outside
any transaction, so the database is never locked while a mail server thinks. A worker that dies
mid-batch leaves leases that expire; its rows are then sent again (at least once after a crash,
with the same Message-ID, so mail clients can spot the copy).
"""

from __future__ import annotations

import logging
import smtplib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import or_, select, update
from sqlalchemy.orm import selectinload

from .. import notifications
from ..extensions import db
from ..mailer import Message, Transport, open_transport
from ..models import OutboxMessage, OutboxStatus, Registration
from ..timeutil import utcnow

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=10)
MAX_ATTEMPTS = 10
FIRST_RETRY = timedelta(minutes=1)
LONGEST_RETRY = timedelta(hours=6)


@dataclass
class PassResult:
    sent: int = 0
    retry: int = 0
    failed: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def handled(self) -> int:
        return self.sent + self.retry + self.failed + self.skipped


class TransientError(Exception):
    """Try again later (connection refused, timeout, 4xx)."""


class PermanentError(Exception):
    """Do not try again (5xx for this recipient)."""


def backoff(attempts: int) -> timedelta:
    """1, 2, 4, 8 ... minutes, at most six hours."""
    return min(FIRST_RETRY * (2 ** max(attempts - 1, 0)), LONGEST_RETRY)


def classify(exc: BaseException) -> Exception:
    """Map an SMTP or network error to transient or permanent."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _msg in exc.recipients.values()]
        text = "; ".join(f"{addr}: {code} {msg!r}" for addr, (code, msg) in exc.recipients.items())
        if codes and all(code >= 500 for code in codes):
            return PermanentError(text)
        return TransientError(text)
    if isinstance(exc, smtplib.SMTPResponseException):
        message = f"{exc.smtp_code} {exc.smtp_error!r}"
        return PermanentError(message) if exc.smtp_code >= 500 else TransientError(message)
    return TransientError(f"{type(exc).__name__}: {exc}")


def claim(batch_size: int, now: datetime, worker: str) -> list[int]:
    """Lease up to ``batch_size`` due rows to this worker; commits. Returns their ids."""
    stmt = (
        select(OutboxMessage.id)
        .where(
            OutboxMessage.status == OutboxStatus.PENDING,
            OutboxMessage.next_attempt_at <= now,
            or_(OutboxMessage.locked_until.is_(None), OutboxMessage.locked_until < now),
        )
        .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
        .limit(batch_size)
        .with_for_update(skip_locked=True)
    )
    ids = list(db.session.scalars(stmt))
    if ids:
        db.session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(ids))
            .values(locked_until=now + LEASE)
            .execution_options(synchronize_session=False)
        )
    db.session.commit()
    log.debug("worker %s claimed %d rows", worker, len(ids))
    return ids


def _load(ids: list[int]) -> list[OutboxMessage]:
    rows = db.session.scalars(
        select(OutboxMessage)
        .where(OutboxMessage.id.in_(ids))
        .options(
            selectinload(OutboxMessage.registration).selectinload(Registration.event),
            selectinload(OutboxMessage.registration).undefer(Registration.checkin_qr),
            selectinload(OutboxMessage.registration).selectinload(Registration.answers),
        )
        .order_by(OutboxMessage.id)
    )
    return list(rows)


def _record(row: OutboxMessage, outcome: str, now: datetime, error: str = "") -> None:
    row.locked_until = None
    if outcome == "sent":
        row.status, row.sent_at, row.last_error = OutboxStatus.SENT, now, ""
        row.attempts += 1
    elif outcome == "skipped":
        row.status, row.last_error = OutboxStatus.SKIPPED, error
    elif outcome == "failed":
        row.status, row.last_error = OutboxStatus.FAILED, error
        row.attempts += 1
    else:  # retry
        row.attempts += 1
        row.last_error = error
        if row.attempts >= MAX_ATTEMPTS:
            row.status = OutboxStatus.FAILED
            row.last_error = f"gave up after {row.attempts} attempts: {error}"
        else:
            row.next_attempt_at = now + backoff(row.attempts)


def send_batch(
    ids: list[int],
    *,
    clock: Callable[[], datetime] = utcnow,
    should_stop: Callable[[], bool] = lambda: False,
) -> PassResult:
    """Send the claimed rows over one connection and record each result; commits.

    Each mail is rendered and built on its own; an error in one (a template, the data, a
    message the transport refuses) fails that row with the reason and the batch goes on.
    A failure of the connection itself (refused, timeout, dropped) puts the row in hand and all
    rows not yet sent back for a later attempt. Rows left when ``should_stop`` turns true are
    given back at once (SIGTERM finishes the message in hand, not the batch)."""
    result = PassResult()
    pending = _load(ids)
    base_url = current_app.config["BASE_URL"]
    try:
        with current_app.test_request_context("/", base_url=base_url):
            messages = dict(
                zip(ids_of(pending), notifications.build_messages(pending), strict=True)
            )
            with open_transport() as transport:
                while pending and not should_stop():
                    _send_one(pending[0], messages[pending[0].id], transport, clock(), result)
                    pending.pop(0)
    except (smtplib.SMTPException, OSError) as exc:
        error = str(classify(exc))
        log.warning(
            "mail server failed, %d messages wait for the next attempt: %s", len(pending), error
        )
        for row in pending:
            _record(row, "retry", clock(), error)
            result.retry += 1
        pending = []
        result.errors.append(error)
    finally:
        for row in pending:
            row.locked_until = None
        db.session.commit()
    return result


def ids_of(rows: list[OutboxMessage]) -> list[int]:
    return [row.id for row in rows]


def _send_one(
    row: OutboxMessage,
    message: Message | Exception | None,
    transport: Transport,
    now: datetime,
    result: PassResult,
) -> None:
    if isinstance(message, Exception):  # a template bug or bad data must not block the queue
        log.error("cannot render outbox row %s: %r", row.id, message)
        _record(row, "failed", now, f"render error: {type(message).__name__}: {message}")
        result.failed += 1
        return
    if message is None:
        _record(row, "skipped", now, "no longer applicable")
        result.skipped += 1
        return
    try:
        transport.send(message)
    except (smtplib.SMTPRecipientsRefused, smtplib.SMTPResponseException) as exc:
        # The server answered for this message; the connection is fine for the next one.
        error = classify(exc)
        outcome = "failed" if isinstance(error, PermanentError) else "retry"
        _record(row, outcome, now, str(error))
        if outcome == "failed":
            result.failed += 1
        else:
            result.retry += 1
        return
    except (smtplib.SMTPException, OSError):
        raise  # the connection itself: send_batch puts this row and the rest back
    except Exception as exc:  # this message cannot be sent (its data); the next one can
        log.error("cannot send outbox row %s: %r", row.id, exc)
        _record(row, "failed", now, f"send error: {type(exc).__name__}: {exc}")
        result.failed += 1
        return
    _record(row, "sent", now)
    result.sent += 1


def send_due(
    *,
    batch_size: int = 100,
    clock: Callable[[], datetime] = utcnow,
    should_stop: Callable[[], bool] = lambda: False,
    worker: str | None = None,
) -> PassResult:
    """Send everything that is due now, batch after batch. Returns the totals."""
    worker = worker or uuid.uuid4().hex[:8]
    total = PassResult()
    while not should_stop():
        ids = claim(batch_size, clock(), worker)
        if not ids:
            break
        batch = send_batch(ids, clock=clock, should_stop=should_stop)
        for name in ("sent", "retry", "failed", "skipped"):
            setattr(total, name, getattr(total, name) + getattr(batch, name))
        total.errors.extend(batch.errors)
        if batch.errors:  # the server is unreachable: stop this pass, the rows wait their turn
            break
    return total
